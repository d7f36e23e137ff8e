"""Explanations: integrated gradients add up to the prediction (completeness), fall on the lit
pixels of the points task, run on PyTorch too, and `img2num explain` writes its pictures."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import needs, one_line_error, run_cli, run_python

from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.explain import SUMMARY_FILE, integrated_gradients


def test_attributions_add_up_to_prediction_minus_baseline(trained_run, tiny_folder):
    from img2num.data import load_dataset

    x = load_dataset(tiny_folder / "test.npz").x[:6]
    result = integrated_gradients(trained_run, x, steps=64)
    assert result.attributions.shape == x.shape
    change = np.abs(result.predictions - result.baseline_predictions)
    # The midpoint rule on a ReLU network: a few kinks on the path, so within 2% (and 0.05).
    assert np.all(np.abs(result.completeness_gap) <= 0.02 * change + 0.05), (result.completeness_gap, change)
    # With one step the rule is the gradient at the middle only: completeness visibly breaks.
    rough = integrated_gradients(trained_run, x, steps=1)
    assert np.abs(rough.completeness_gap).max() > np.abs(result.completeness_gap).max()


def test_on_points_attribution_falls_on_lit_pixels_only(trained_run, tiny_folder):
    from img2num.data import load_dataset

    x = load_dataset(tiny_folder / "test.npz").x[:6]
    attributions = integrated_gradients(trained_run, x, steps=16).attributions
    lit = x > 0
    assert np.all(attributions[~lit] == 0)
    assert np.abs(attributions[lit]).sum() > 0


def test_bad_steps_are_refused(trained_run):
    with pytest.raises(Img2NumError, match="steps must be a whole number of at least 1, got 0"):
        integrated_gradients(trained_run, np.zeros((1, 8, 8, 1), np.uint8), steps=0)


def test_cli_explain_writes_a_picture_per_image_and_a_summary(trained_run, tiny_folder, tmp_path, capsys):
    out = tmp_path / "explained"
    status, stdout, _ = run_cli(capsys, "explain", trained_run.path, tiny_folder / "test.npz", "--out", out, "--limit", "3", "--steps", "16")
    assert status == 0 and "3 explained images" in stdout
    assert len(list(out.glob("*.png"))) == 3
    rows = list(csv.DictReader((out / SUMMARY_FILE).open()))
    assert [row["image"] for row in rows] == ["test.npz[0]", "test.npz[1]", "test.npz[2]"]
    assert all((out / row["picture"]).is_file() for row in rows)
    status, _, err = run_cli(capsys, "explain", trained_run.path, tiny_folder / "test.npz", "--out", out)
    assert status == 1 and "exists" in one_line_error(err)
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, "explain", trained_run.path, tiny_folder / "test.npz", "--out", out, "--steps", "0")
    assert stop.value.code == 2


def test_cli_explain_reads_image_files(trained_run, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255 * index, "L").save(folder / f"{index}.png")
    status, _, _ = run_cli(capsys, "explain", trained_run.path, folder, "--out", tmp_path / "out", "--steps", "8")
    assert status == 0
    rows = list(csv.DictReader((tmp_path / "out" / SUMMARY_FILE).open()))
    assert [row["picture"] for row in rows] == ["000-0.png", "001-1.png"]
    assert float(rows[0]["attribution_sum"]) == 0.0  # the black image is its own baseline
    # The Python function takes the same inputs as the command line.
    from img2num.explain import explain_images

    explain_images(trained_run, folder, tmp_path / "python", steps=8, limit=1)
    rows = list(csv.DictReader((tmp_path / "python" / SUMMARY_FILE).open()))
    assert [row["image"] for row in rows] == [str(folder / "0.png")]


def _untrained_run(name):
    from img2num.bundle import Run
    from img2num.preprocessing import Preprocessing, TargetScaling
    from img2num.models import create_model

    # Untrained weights: completeness is a property of the method, whatever the weights.
    return Run(create_model(name, (8, 8, 3)), Preprocessing((8, 8, 3), 1 / 255), {"train": {"model": name}}, target_scaling=TargetScaling(5.0, 3.0))


def test_the_default_model_explains_with_completeness():
    # Every registered model is checked on PyTorch below, where no compile makes it cheap.
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    result = integrated_gradients(_untrained_run("pixel_gap"), x, steps=32)
    change = np.abs(result.predictions - result.baseline_predictions)
    assert np.all(np.abs(result.completeness_gap) <= 0.05 * change + 1e-3), (result.completeness_gap, change)


@needs("torch")
def test_completeness_holds_on_pytorch_for_a_trained_run_and_every_registered_model(trained_run, tiny_folder, tmp_path):
    done = run_python(
        f"""
        import numpy as np
        import keras
        from img2num.data import load_dataset
        from img2num.explain import integrated_gradients
        from img2num.bundle import Run
        from img2num.preprocessing import Preprocessing, TargetScaling
        from img2num.models import create_model, list_models
        def _untrained_run(name):
            model = create_model(name, (8, 8, 3))
            return Run(model, Preprocessing((8, 8, 3), 1 / 255), {{"train": {{"model": name}}}}, target_scaling=TargetScaling(5.0, 3.0))
        assert keras.backend.backend() == "torch"
        x = load_dataset({str(tiny_folder / "test.npz")!r}).x[:4]
        result = integrated_gradients({str(trained_run.path)!r}, x, steps=64)
        change = np.abs(result.predictions - result.baseline_predictions)
        assert np.all(np.abs(result.completeness_gap) <= 0.02 * change + 0.05), result.completeness_gap
        assert np.all(result.attributions[x == 0] == 0)
        print(float(result.attributions.sum()))
        colour = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
        for spec in list_models():
            other = integrated_gradients(_untrained_run(spec.name), colour, steps=32)
            change = np.abs(other.predictions - other.baseline_predictions)
            assert np.all(np.isfinite(other.attributions)), spec.name
            assert np.all(np.abs(other.completeness_gap) <= 0.05 * change + 1e-3), (spec.name, other.completeness_gap, change)
        """,
        "torch",
        tmp_path,
    )
    x = load_dataset(tiny_folder / "test.npz").x[:4]
    jax_total = integrated_gradients(trained_run, x, steps=64).attributions.sum()
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(float(jax_total), rel=1e-3, abs=1e-3)


def test_cli_explain_writes_the_good_images_and_names_the_bad_ones(trained_run, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255, "L").save(folder / "a.png")
    (folder / "b.png").write_text("no pixels here")
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255, "L").save(folder / "c.png")
    status, out, err = run_cli(capsys, "explain", trained_run.path, folder, "--out", tmp_path / "out", "--steps", "4")
    assert status == 1
    assert out.strip() == f"2 explained images in {tmp_path / 'out'} (one PNG each, explanations.csv)"
    assert err.splitlines() == [
        f"img2num: error: {folder / 'b.png'}: not an image file (Pillow cannot identify it)",
        "img2num: error: 1 of 3 images could not be used; 2 explained images written",
    ]
    rows = list(csv.DictReader((tmp_path / "out" / SUMMARY_FILE).open()))
    assert [row["image"] for row in rows] == [str(folder / "a.png"), str(folder / "c.png")]
