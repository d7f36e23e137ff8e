"""Prediction intervals: conformal coverage, adaptive widths, levels, the run's calibration file,
and the --interval options of predict and evaluate."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from img2num.bundle import load_run
from img2num.errors import Img2NumError
from img2num.intervals import CALIBRATION_FILE, Calibration, calibrate, calibrate_run, check_level, interval_metrics


def heteroscedastic(n, rng):
    """Predictions uniform on 0..10 and labels scattered around them with spread 0.1 + x."""
    x = rng.uniform(0, 10, n)
    return x + (0.1 + x) * rng.standard_normal(n), x


@pytest.mark.parametrize("method", ["normalized", "plain"])
def test_coverage_matches_the_level_within_its_standard_error(method):
    rng = np.random.default_rng(0)
    repeats, calibration_size, test_size = 40, 400, 2000
    for level in (0.8, 0.9):
        coverages = []
        for _ in range(repeats):
            calibration = calibrate(*heteroscedastic(calibration_size, rng), rng, method=method, label_range=(-1e9, 1e9))
            y, x = heteroscedastic(test_size, rng)
            coverages.append(interval_metrics(y, calibration.interval(x, level), level)["coverage"])
        scored = len(calibration.scores)
        # Conformal coverage given the calibration set is Beta-distributed around the level,
        # with variance level (1 - level) / (scored + 2); the test images add a binomial term.
        # Its mean lies in [level, level + 1 / (scored + 1)].
        spread = math.sqrt(level * (1 - level) * (1 / (scored + 2) + 1 / test_size) / repeats)
        assert level - 4 * spread <= np.mean(coverages) <= level + 1 / (scored + 1) + 4 * spread, (level, np.mean(coverages))


def test_normalized_widths_adapt_to_the_difficulty_and_are_narrower_overall():
    rng = np.random.default_rng(1)
    normalized = calibrate(*heteroscedastic(2000, rng), rng, label_range=(-1e9, 1e9))
    plain = calibrate(*heteroscedastic(2000, rng), rng, method="plain", label_range=(-1e9, 1e9))
    x = np.array([0.5, 9.5])
    narrow, wide = np.diff(np.stack(normalized.interval(x, 0.9)[1:]), axis=0)[0]
    # The true spread grows from 0.6 to 9.6; the widths follow within a factor of about 2.
    assert 5 < wide / narrow < 30
    plain_width = np.diff(np.stack(plain.interval(x, 0.9)[1:]), axis=0)[0]
    assert plain_width[0] == pytest.approx(plain_width[1])
    y, x = heteroscedastic(20000, rng)
    assert interval_metrics(y, normalized.interval(x, 0.9), 0.9)["mean_width"] < interval_metrics(y, plain.interval(x, 0.9), 0.9)["mean_width"]
    # Where the task is easy, plain intervals cover nearly everything; normalized ones stay near the level.
    easy = x < 2
    assert interval_metrics(y[easy], plain.interval(x[easy], 0.9), 0.9)["coverage"] > 0.99
    assert abs(interval_metrics(y[easy], normalized.interval(x[easy], 0.9), 0.9)["coverage"] - 0.9) < 0.05


def test_bounds_are_clipped_to_the_label_range():
    rng = np.random.default_rng(2)
    calibration = calibrate(*heteroscedastic(200, rng), rng, label_range=(0.0, 10.0))
    _, lower, upper = calibration.interval(np.array([0.0, 10.0, 30.0]), 0.9)
    assert lower[0] == 0.0 and upper[1] == 10.0
    # A prediction outside the labels seen stays inside its own interval.
    assert lower[2] < 30.0 and upper[2] == 30.0


def test_a_run_fits_the_difficulty_on_training_residuals_unless_it_overfits():
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    labels, train_labels = rng.uniform(0, 10, 200), rng.uniform(0, 10, 800)
    noise = lambda y, scale: y + rng.normal(0, 0.1 + 0.2 * y * scale)  # noqa: E731  (errors grow with y)
    run = SimpleNamespace()
    calibrate_run(run, labels, noise(labels, 1.0), train_labels, noise(train_labels, 1.0), seed=0)
    # Every validation image gives a score, the training images fit the difficulty, which grows.
    assert run.calibration.fit_on == "training" and run.calibration.fit_samples == 800
    assert len(run.calibration.scores) == 200 and run.calibration.difficulty[-1] > 3 * run.calibration.difficulty[0]
    assert run.calibration.label_range == (min(labels.min(), train_labels.min()), max(labels.max(), train_labels.max()))
    # A model that fits its training images ten times closer: half the validation split fits it.
    calibrate_run(run, labels, noise(labels, 1.0), train_labels, train_labels + rng.normal(0, 0.01, 800), seed=0)
    assert run.calibration.fit_on == "validation half" and len(run.calibration.scores) == 100
    assert Calibration.from_dict(run.calibration.to_dict()) == run.calibration


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, float("nan"), "0.9", True, None])
def test_bad_levels_are_refused(level):
    with pytest.raises(Img2NumError, match="interval level must be a number between 0 and 1"):
        check_level(level)


def test_a_level_too_high_for_the_calibration_size_says_what_it_needs():
    calibration = calibrate(np.arange(20.0), np.arange(20.0) + 1, np.random.default_rng(0), method="plain")
    assert calibration.score_quantile(0.95) == 1.0
    with pytest.raises(Img2NumError, match="level 0.99 needs at least 99 calibration images; this run has 20"):
        calibration.interval(np.zeros(3), 0.99)


def test_calibrate_refuses_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(Img2NumError, match="one prediction per label"):
        calibrate(np.zeros(5), np.zeros(4), rng)
    with pytest.raises(Img2NumError, match="at least 4 finite"):
        calibrate(np.array([1.0, np.nan, 2.0, 3.0]), np.zeros(4), rng)
    with pytest.raises(Img2NumError, match="method must be one of"):
        calibrate(np.zeros(5), np.zeros(5), rng, method="cqr")


def test_calibration_round_trips_and_corrupt_files_are_named(trained_run, tmp_path):
    calibration = trained_run.calibration
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    folder = tmp_path / "run"
    shutil.copytree(trained_run.path, folder)
    (folder / CALIBRATION_FILE).write_text('{"scores": [2, 1], "knots": [0], "difficulty": [1], "label_range": [0, 1]}')
    with pytest.raises(Img2NumError, match=f"{CALIBRATION_FILE}: corrupt calibration"):
        load_run(folder)


def test_a_trained_run_predicts_intervals_that_survive_saving(trained_run, tiny_folder):
    from img2num import predict
    from img2num.data import load_dataset

    test = load_dataset(tiny_folder / "test.npz")
    assert (trained_run.path / CALIBRATION_FILE).is_file()
    prediction, lower, upper = trained_run.predict(test.x, interval=0.8)
    assert np.array_equal(prediction, trained_run.predict(test.x))
    assert np.all(lower <= prediction) and np.all(prediction <= upper) and np.all(upper > lower)
    loaded = predict(trained_run.path, test, interval=0.8)
    np.testing.assert_allclose(loaded.lower, lower, atol=1e-4)
    wider = trained_run.predict_data(test, interval=0.9)
    assert np.all(wider.upper - wider.lower >= upper - lower - 1e-6)


def test_runs_saved_before_intervals_still_predict_and_explain_why_there_are_none(trained_run, tiny_folder, tmp_path, capsys):
    folder = tmp_path / "old"
    shutil.copytree(trained_run.path, folder)
    (folder / CALIBRATION_FILE).unlink()
    old = load_run(folder)
    x = np.zeros((2, 8, 8, 1), np.uint8)
    assert old.predict(x).shape == (2,)
    with pytest.raises(Img2NumError, match="has no interval calibration"):
        old.predict(x, interval=0.9)
    status, _, err = run_cli(capsys, "predict", folder, tiny_folder / "test.npz", "--interval", "0.9")
    assert status == 1 and "has no interval calibration" in one_line_error(err)
    status, _, err = run_cli(capsys, "evaluate", folder, tiny_folder / "test.npz", "--interval", "0.9")
    assert status == 1 and "has no interval calibration" in one_line_error(err)


def test_cli_predict_and_evaluate_give_intervals(trained_run, tiny_folder, tmp_path, capsys):
    status, out, _ = run_cli(capsys, "predict", trained_run.path, tiny_folder / "test.npz", "--interval", "0.9")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "index,prediction,lower,upper,label" and len(lines) == 31
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    _, prediction, lower, upper, label = rows.T
    assert np.all((lower <= prediction) & (prediction <= upper))
    output = tmp_path / "evaluation.json"
    status, out, _ = run_cli(capsys, "evaluate", trained_run.path, tiny_folder / "test.npz", "--interval", "0.9", "--output", output)
    assert status == 0 and "coverage" in out and "mean_width" in out
    record = json.loads(output.read_text())
    # The evaluation's coverage and width are those of the intervals predict printed.
    assert record["interval_level"] == 0.9
    assert record["coverage"] == pytest.approx(np.mean((lower <= label) & (label <= upper)))
    assert record["mean_width"] == pytest.approx(np.mean(upper - lower), rel=1e-5)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("level", ["0", "1", "1.2", "abc"])
def test_cli_refuses_bad_levels(trained_run, tiny_folder, capsys, command, level):
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, command, trained_run.path, tiny_folder / "test.npz", "--interval", level)
    assert stop.value.code == 2
    assert "--interval: expected a level between 0 and 1" in capsys.readouterr().err


def test_the_prediction_grid_shows_intervals(trained_run):
    from img2num import plots

    figure = plots.sample_grid_figure(np.zeros((2, 8, 8, 1)), np.array([3.0, 4.0]), np.array([3.2, 4.1]), bounds=(np.array([1.0, 2.0]), np.array([5.5, 6.0])))
    assert plots.grid_titles(figure) == ["R 3 P 3.2 \n[1.0, 5.5]", "R 4 P 4.1 \n[2.0, 6.0]"]
    assert (trained_run.path / "predictions.png").is_file()
