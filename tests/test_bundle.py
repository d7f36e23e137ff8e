"""The target scaling of a run: standardize on the training split, restore at prediction."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from img2num.preprocessing import TargetScaling

labels = arrays(np.float32, st.integers(2, 50), elements=st.floats(-1e4, 1e4, width=32))


@settings(max_examples=50, deadline=None)
@given(labels)
def test_scaled_targets_have_mean_zero_and_restore_to_themselves(y):
    scaling = TargetScaling.for_targets(y)
    scaled = scaling.scale(y)
    assert scaled.dtype == np.float32 and scaling.std > 0
    if np.ptp(y) > 1e-3:
        assert abs(float(scaled.astype(np.float64).mean())) < 1e-4
        assert abs(float(scaled.astype(np.float64).std()) - 1) < 1e-3
    assert np.allclose(scaling.restore(scaled), y, rtol=1e-5, atol=1e-2)
    # A mean squared error in model units times the loss factor is the one in label units.
    outputs = np.linspace(-2, 2, len(y))
    in_model_units = np.mean((outputs - scaling.scale(y)) ** 2)
    in_label_units = np.mean((scaling.restore(outputs).astype(np.float64) - y) ** 2)
    assert np.isclose(in_model_units * scaling.loss_factor, in_label_units, rtol=1e-3, atol=1e-2)


def test_constant_targets_scale_by_one_and_the_default_is_the_identity():
    scaling = TargetScaling.for_targets(np.full(5, 7.0))
    assert scaling == TargetScaling(7.0, 1.0)
    assert np.array_equal(TargetScaling().restore(np.array([[1.5], [2.0]])), np.array([[1.5], [2.0]], np.float32))
    assert TargetScaling.from_dict(scaling.to_dict()) == scaling


def test_damaged_run_files_are_one_line(capsys, trained_run, tiny_folder, tmp_path):
    import json
    import shutil

    from conftest import one_line_error, run_cli

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.path, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["preprocessing"]["input_dtype"] = "int7"
    (run_dir / "config.json").write_text(json.dumps(config))
    status, _, err = run_cli(capsys, "predict", run_dir, tiny_folder / "test.npz")
    assert status == 1
    assert "config.json: corrupt run configuration (preprocessing: unknown input_dtype 'int7'; expected a pixel type" in one_line_error(err)
    shutil.copy(trained_run.path / "config.json", run_dir / "config.json")
    (run_dir / "model.keras").write_bytes((trained_run.path / "model.keras").read_bytes()[:500])
    status, _, err = run_cli(capsys, "evaluate", run_dir, tiny_folder / "test.npz")
    assert status == 1
    assert one_line_error(err) == f"img2num: error: {run_dir / 'model.keras'}: corrupt model file (not a complete .keras zip archive)"


def test_splits_are_predicted_together_as_each_alone(trained_run, tiny_folder):
    from img2num.data import load_dataset

    splits = {name: load_dataset(tiny_folder / f"{name}.npz") for name in ("train", "val", "test")}
    together = trained_run.predict_splits(splits)
    assert list(together) == ["train", "val", "test"]
    for name, split in splits.items():
        assert together[name].shape == (len(split),)
        assert np.allclose(together[name], trained_run.predict_data(split), atol=1e-5)


def test_a_model_that_does_not_match_its_config_is_one_line(capsys, trained_run, tiny_folder, tmp_path):
    import shutil

    from conftest import one_line_error, run_cli

    from img2num.models import create_model

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.path, run_dir)
    create_model("mlp", (9, 9, 1)).save(run_dir / "model.keras")  # another run's model
    status, _, err = run_cli(capsys, "predict", run_dir, tiny_folder / "test.npz")
    assert status == 1
    assert one_line_error(err) == (
        f"img2num: error: {run_dir / 'model.keras'}: the model takes 9x9x1 images and gives one number per image, "
        "but config.json describes 8x8x1 images and one number; the two files come from different runs"
    )
