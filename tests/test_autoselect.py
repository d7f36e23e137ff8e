"""`--model auto` (successive halving of the candidates), the time limit and the weak-fit warning."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import TINY, one_line_error, run_cli

from img2num import autoselect, clock, registry
from img2num.bundle import load_run
from img2num.config import DEFAULT_TIME_LIMIT, TrainConfig
from img2num.data import Dataset, generate_points_splits, load_dataset
from img2num.errors import Img2NumError, Img2NumWarning
from img2num.training import CANDIDATES_FILE, train


def test_round_epochs_steps_down_to_a_few_values():
    assert [autoselect.round_epochs(x) for x in (0.5, 1, 2.9, 7.99, 8, 9.9, 10, 13.5, 47, 100)] == [
        0, 1, 2, 7, 8, 8, 10, 12, 40, 96,
    ]
    # Rounding down by at most one step of about 2^(1/4).
    for x in np.linspace(8, 5000, 200):
        assert x / 1.26 <= autoselect.round_epochs(x) <= x


def test_candidates_follow_the_image_shape_and_register_known_models_once():
    assert autoselect.candidate_models((8, 8, 1)) == ["pixel_gap", "cnn_gap"]
    assert autoselect.expand_models(["auto", "mlp", "cnn_gap"], (8, 8, 1)) == ["pixel_gap", "cnn_gap", "mlp"]
    with pytest.raises(Img2NumError, match="unknown model 'nope'"):
        registry.register_candidate("nope", "no such model", rank=9)
    with pytest.raises(ValueError, match="candidate already"):
        registry.register_candidate("cnn_gap", "twice", rank=9)


def test_time_limit_applies_to_auto_rejects_bad_values_and_keeps_a_reserve():
    assert TrainConfig().model == "auto" and TrainConfig().resolved_time_limit == DEFAULT_TIME_LIMIT
    assert TrainConfig(model="mlp").resolved_time_limit is None
    assert TrainConfig(model="mlp", time_limit=5).resolved_time_limit == 5.0
    for bad in (0, -1, float("inf"), True, "10"):
        with pytest.raises(Img2NumError, match="time limit must be a positive number"):
            TrainConfig(time_limit=bad)
    # The reserve for saving and pictures: 15%, at least 5 s, at most 45 s and half the limit;
    # a third of that when nothing is saved.
    assert [clock.time_reserve(t) for t in (2, 20, 100, 1000)] == [1.0, 5.0, 15.0, 45.0]
    assert [clock.time_reserve(t, saving=False) for t in (2, 60, 1000)] == [1.0, 3.0, 15.0]


@pytest.fixture(scope="module")
def auto_run(tiny_folder, tmp_path_factory):
    """`auto` on the tiny points data: a few epochs, so the epoch cap, not the clock, decides.
    Successive halving alone: the learning-curve bound and the ensemble are tested in
    test_search_signals.py."""
    stream = io.StringIO()
    run_dir = tmp_path_factory.mktemp("auto") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autoselect, "_hopeless", lambda *args: None)
        patch.setattr(autoselect, "ENSEMBLE_SIZE", 1)
        run = train(tiny_folder, TrainConfig(epochs=6, seed=2), run_dir=run_dir, stream=stream)
    return run, stream.getvalue()


def test_auto_tries_every_candidate_and_keeps_the_best(auto_run, tiny_folder):
    run, progress = auto_run
    selection = run.config["selection"]
    rows = {row["model"]: row for row in selection["candidates"]}
    assert set(rows) == {"pixel_gap", "cnn_gap"}
    chosen = selection["chosen"]
    assert run.model_name == chosen == min(rows, key=lambda name: rows[name]["val_mse"])
    loser = next(name for name in rows if name != chosen)
    assert rows[chosen]["outcome"] == "chosen" and rows[loser]["outcome"] == "dropped after rung 1"
    # Two epochs of probe, then rung 1 up to the 6-epoch cap for both; the halving leaves one.
    assert rows[chosen]["epochs_after_rung"] == rows[loser]["epochs_after_rung"] == [2, 6]
    assert f"auto: chose {chosen}" in progress and "auto: probe cnn_gap epochs 1-2" in progress
    assert "auto: rung 1 pixel_gap epochs 3-6" in progress
    # The winner's epochs continue from call to call, warm-started: one history 1..6.
    assert [row["epoch"] for row in run.history] == list(range(1, 7))
    assert rows[chosen]["val_mse"] == pytest.approx(min(row["val_loss"] for row in run.history))
    # The run holds the chosen model and predicts as it was evaluated, saved or not.
    loaded = load_run(run.path)
    test = load_dataset(tiny_folder / "test.npz")
    assert np.array_equal(loaded.predict(test.x), run.predict(test.x))
    assert np.mean((loaded.predict(test.x) - test.y) ** 2) == pytest.approx(run.metrics["test"]["mse"], rel=1e-5)
    with open(run.path / CANDIDATES_FILE) as handle:
        table = list(csv.DictReader(handle))
    assert [row["model"] for row in table] == ["pixel_gap", "cnn_gap"]
    assert json.loads((run.path / "config.json").read_text())["selection"]["chosen"] == chosen


def test_time_limit_stops_a_named_model_between_epochs(tiny_folder):
    # A 0.2 s limit keeps 0.1 s for predicting: the first epoch ends past the rest.
    run = train(tiny_folder, TrainConfig(model="mlp", epochs=50, patience=0, time_limit=0.2), quiet=True)
    assert run.config["epochs_run"] == 1 and run.config["time_limit"] == 0.2


def test_auto_with_no_time_left_trains_the_first_candidate_only(tiny_folder):
    run = train(tiny_folder, TrainConfig(epochs=50, time_limit=0.2), quiet=True)
    rows = run.config["selection"]["candidates"]
    assert [row["outcome"] for row in rows] == ["chosen", "not tried: no time left"]
    assert run.model_name == "pixel_gap" and run.config["epochs_run"] == 1


def test_weak_fit_warning_on_pure_noise(tmp_path):
    # Labels drawn independently of the images: no model can beat the mean.
    rng = np.random.default_rng(0)
    data = {
        name: Dataset(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.normal(10, 2, n).astype(np.float32), name)
        for name, n in (("train", 120), ("val", 60))
    }
    with pytest.warns(Img2NumWarning, match="barely beats predicting the mean") as caught:
        run = train(data["train"], TrainConfig(model="pixel_gap", epochs=2), val=data["val"], quiet=True)
    warning = run.config["warning"]
    assert [str(w.message) for w in caught if w.category is Img2NumWarning] == [warning]
    assert warning.startswith("pixel_gap barely beats predicting the mean (validation R^2 ")
    assert "no signal" in warning and "--time-limit" in warning
    # A named model has no time limit unless one is given.
    assert "time_limit" not in run.config


@pytest.mark.filterwarnings("default::img2num.errors.Img2NumWarning")
def test_cli_prints_the_warning_once_and_records_it(capsys, tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "noise.npz", x=rng.integers(0, 256, (150, 8, 8, 1), dtype=np.uint8), y=rng.normal(0, 1, 150))
    status, _, err = run_cli(
        capsys, "train", tmp_path / "noise.npz", "--model", "pixel_gap", "--epochs", "2", "--quiet", "--run", tmp_path / "r"
    )
    assert status == 0
    assert err.startswith("img2num: warning: pixel_gap barely beats predicting the mean") and err.count("\n") == 1
    assert err.strip() == "img2num: warning: " + json.loads((tmp_path / "r" / "config.json").read_text())["warning"]


def test_cli_auto_prints_the_candidates_reproducibly_and_rejects_bad_limits(
    capsys, tmp_path, tiny_folder, monkeypatch, auto_run
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(autoselect, "_hopeless", lambda *args: None)  # as auto_run searches
    monkeypatch.setattr(autoselect, "ENSEMBLE_SIZE", 1)
    status, out, err = run_cli(capsys, "train", tiny_folder, "--epochs", "6", "--seed", "2", "--quiet")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["candidate", "val", "MSE", "val", "R^2", "epochs", "seconds", "outcome"]
    assert lines[1].startswith("pixel_gap ") and lines[2].startswith("cnn_gap ")
    assert lines[3].startswith("chose ") and lines[-1] == "run saved in runs/auto"
    # The same seed and data give the same choice and the same numbers as the Python API's run.
    run, _ = auto_run
    again = json.loads((tmp_path / "runs" / "auto" / "config.json").read_text())["selection"]
    key = lambda record: [(row["model"], row["val_mse"], row["epochs"]) for row in record["candidates"]]  # noqa: E731
    assert key(again) == key(run.config["selection"])
    for bad in ("0", "-5", "soon"):
        with pytest.raises(SystemExit) as caught:
            run_cli(capsys, "train", tiny_folder, "--time-limit", bad)
        err = capsys.readouterr().err.strip()
        assert caught.value.code == 2 and "--time-limit: expected a positive number" in err and "\n" not in err
    status, _, err = run_cli(capsys, "train", tiny_folder, "--model", "nope")
    assert status == 1
    assert "unknown model 'nope'; known models: auto (the automatic choice), mlp, cnn" in one_line_error(err)


def test_compare_shares_its_time_limit_and_takes_auto(tmp_path):
    from img2num.comparison import compare

    splits = generate_points_splits(TINY)
    summary = compare(
        splits["train"], ["auto"], val=splits["val"], test=splits["test"], out_dir=tmp_path / "c",
        epochs=1, keep_runs=False, quiet=True, time_limit=120,
    )
    auto = next(entry for entry in summary["entries"] if entry["name"] == "auto")
    assert auto["chosen"] in ("pixel_gap", "cnn_gap")
    assert f"auto (seed 0) chose {auto['chosen']}." in (tmp_path / "c" / "report.md").read_text()
    with pytest.raises(Img2NumError, match="time limit must be a positive number"):
        compare(splits["train"], ["mlp"], out_dir=tmp_path / "d", time_limit=0)
