"""Metrics, the weak-fit warning, and scoring a saved run."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.evaluation import evaluate
from img2num.metrics import format_metrics, mean_baseline_mse, regression_metrics, weak_fit_warning


def test_metrics_equal_hand_computed_values():
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 3.0, 2.0])
    assert metrics["mse"] == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt(1.25))
    assert metrics["mae"] == pytest.approx(0.75)
    assert metrics["r2"] == pytest.approx(1 - 5 / 5.0)


def test_r2_of_constant_labels_is_undefined_and_said_so(trained_run, tmp_path):
    # Every label the same: no spread to explain. Not 0.0 (scikit-learn's), which reads as a
    # useless model, for a near-perfect one too.
    for predictions in ([3.0, 3.0], [3.0, 3.001], [3.0, 4.0]):
        assert np.isnan(regression_metrics([3.0, 3.0], predictions)["r2"])
    text = format_metrics(regression_metrics([3.0, 3.0], [3.0, 3.001]))
    assert text.splitlines()[-1] == "r2    undefined (every label is the same, so there is no spread to explain)"
    np.savez(tmp_path / "same.npz", x=np.zeros((4, 8, 8, 1), np.uint8), y=np.full(4, 7.0))
    evaluate(trained_run, tmp_path / "same.npz", output=tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["r2"] is None  # strict JSON: null, not NaN


def test_mean_prediction_has_zero_r2_and_column_predictions_work():
    y = np.array([1.0, 5.0, 9.0])
    assert regression_metrics(y, np.full((3, 1), y.mean()))["r2"] == pytest.approx(0.0)


def test_length_mismatch_is_rejected():
    with pytest.raises(ValueError, match="equal, non-empty"):
        regression_metrics([1.0, 2.0], [1.0])


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(2, 50), elements=st.floats(-1e6, 1e6)))
def test_perfect_predictions_have_zero_error_and_r2_one(y):
    metrics = regression_metrics(y, y.copy())
    assert metrics["mse"] == 0.0 and metrics["mae"] == 0.0
    assert metrics["r2"] == 1.0 if np.ptp(y) > 0 else np.isnan(metrics["r2"])


def test_format_metrics_aligns_names_and_four_decimals():
    text = format_metrics({"mse": 4.0, "rmse": 2.0, "mae": 1.5, "r2": 0.25})
    assert text.splitlines() == ["mse   4.0000", "rmse  2.0000", "mae   1.5000", "r2    0.2500"]


def test_weak_fit_warning_names_the_model_its_r2_and_both_mses():
    baseline = 4.0
    assert mean_baseline_mse([1.0, 3.0], [2.0, 4.0]) == pytest.approx(2.0)
    assert weak_fit_warning({"r2": 0.5, "mse": 2.0}, baseline, "m") is None
    # Constant validation labels: R^2 is undefined and there is nothing to beat.
    assert weak_fit_warning({"r2": float("nan"), "mse": 3.8}, baseline, "m") is None
    low_r2 = weak_fit_warning({"r2": 0.05, "mse": 3.8}, baseline, "cnn_gap")
    assert low_r2 == (
        "cnn_gap barely beats predicting the mean (validation R^2 0.050, MSE 3.8 against 4 for the mean); likely "
        "causes: labels the images do not show (no signal), a model family that cannot see what matters (try "
        "--model cnn_gap or pixel_gap), or too little training (raise --time-limit or --epochs)"
    )
    # A good R^2 but an MSE not clearly below the mean's (validation mean far from training mean).
    high_mse = weak_fit_warning({"r2": 0.5, "mse": 3.9}, baseline, "mlp")
    assert high_mse.startswith("mlp barely beats predicting the mean (validation R^2 0.500, MSE 3.9 against 4 for the mean); ")


def test_evaluate_run_matches_its_predictions_and_saves_json(trained_run, tiny_folder, tmp_path):
    test = load_dataset(tiny_folder / "test.npz")
    metrics = evaluate(trained_run.path, tiny_folder / "test.npz", output=tmp_path / "m.json")
    assert metrics == regression_metrics(test.y, trained_run.predict(test.x))
    assert metrics == pytest.approx(trained_run.metrics["test"])
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["samples"] == 30 and saved["mse"] == metrics["mse"]


def test_evaluate_refuses_data_without_labels(trained_run, tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.zeros((3, 8, 8, 1), np.uint8))
    with pytest.raises(Img2NumError, match="has no array 'y'"):
        evaluate(trained_run, path)


def test_evaluation_file_is_refreshed_but_nothing_else_is_replaced(trained_run, tiny_folder, tmp_path):
    output = tmp_path / "m.json"
    evaluate(trained_run, tiny_folder / "test.npz", output=output)
    evaluate(trained_run, tiny_folder / "test.npz", output=output)
    with pytest.raises(Img2NumError, match="m.json: already exists; pass --overwrite"):
        evaluate(trained_run, tiny_folder / "val.npz", output=output)
    assert json.loads(output.read_text())["samples"] == 30
    evaluate(trained_run, tiny_folder / "val.npz", output=output, overwrite=True)
    assert json.loads(output.read_text())["samples"] == 40
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    with pytest.raises(Img2NumError, match="already exists"):
        evaluate(trained_run, tiny_folder / "test.npz", output=mine)
    assert mine.read_text() == "my notes"


def test_evaluations_from_two_folders_of_one_csv_name_are_two_files(capsys, trained_run, tiny_folder, tmp_path, monkeypatch):
    import shutil

    from conftest import run_cli

    shutil.copytree(trained_run.path, tmp_path / "run")
    for name, split in (("a", "test"), ("b", "val")):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_folder / f"{split}.npz", tmp_path / name / "c.npz")
    saved = []
    for name in ("a", "b", "a"):  # each from its own folder, so both are "c.npz" as given
        monkeypatch.chdir(tmp_path / name)
        status, out, err = run_cli(capsys, "evaluate", tmp_path / "run", "c.npz")
        assert status == 0, err
        saved.append(out.splitlines()[-1].rsplit("/", 1)[1])
    assert saved == ["c.json", "c-2.json", "c.json"]
    records = {file: json.loads((tmp_path / "run" / "evaluations" / file).read_text()) for file in ("c.json", "c-2.json")}
    assert (records["c.json"]["samples"], records["c-2.json"]["samples"]) == (30, 40)
    assert records["c.json"]["data"] == str((tmp_path / "a" / "c.npz").resolve())
    # The same file by its absolute path is the same data: its own file is refreshed.
    status, out, _ = run_cli(capsys, "evaluate", tmp_path / "run", tmp_path / "b" / "c.npz")
    assert out.splitlines()[-1].endswith("evaluations/c-2.json")


def test_huge_metrics_print_in_exponent_form():
    text = format_metrics({"mse": 1.2345678e76, "rmse": 1.1111e38, "mae": 999999.5, "r2": 0.5})
    assert text.splitlines() == ["mse   1.235e+76", "rmse  1.111e+38", "mae   999999.5000", "r2    0.5000"]
