"""ONNX export and the ONNX Runtime engine: every registered model family exported, run by ONNX
Runtime in a process without img2num or Keras, equal to `img2num predict`; `predict --engine onnx`
(with intervals) equal to Keras; the export command's files and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import needs, one_line_error, require, run_cli, write_photos

from img2num.config import DataConfig, TrainConfig
from img2num.models import list_models

pytestmark = needs("onnx", "onnxruntime", "jax2onnx")

# Every registered family, and a head on a pretrained backbone (the tiny random preset).
FAMILIES = [*(spec.name for spec in list_models()), "backbone"]

# Runs ONNX Runtime on each (graph, input) pair with neither img2num nor Keras importable-or-imported.
ORT_SCRIPT = textwrap.dedent(
    """
    import sys, json
    import numpy as np, onnxruntime as ort
    jobs = json.loads(sys.argv[1])
    for graph, pixels, out in jobs:
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        (prediction,) = session.run(["prediction"], {"pixels": np.load(pixels)})
        np.save(out, prediction)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("img2num", "keras", "jax", "torch"))
    print(json.dumps(loaded))
    """
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return write_photos(folder, count=24, size=(16, 16), split=True)


@pytest.fixture(scope="module")
def runs(photos, tmp_path_factory):
    """One run per family, 1 epoch on 16x16 colour photos."""
    from img2num.backbones.random_preset import save_random_preset
    from img2num.training import train

    require("keras_hub")
    preset = save_random_preset(tmp_path_factory.mktemp("preset") / "tiny", seed=0)
    folder = tmp_path_factory.mktemp("export_runs")
    runs = {}
    for family in FAMILIES:
        model = f"backbone:{preset}" if family == "backbone" else family
        runs[family] = folder / family
        train(photos, TrainConfig(model=model, epochs=1, seed=1), data_options=DataConfig(), run_dir=runs[family], quiet=True, pictures=False)
    return runs


def _pixels(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random((5, *shape)).astype(dtype)
    x = rng.integers(0, 256, size=(5, *shape)).astype(dtype)
    x[0] = x[0] > 128  # a binary image: brightness 1 is white, as `Preprocessing.apply` reads it
    return x


def test_every_family_exports_and_runs_without_img2num(runs, tmp_path):
    import img2num

    jobs, expected = [], {}
    for family, run_dir in runs.items():
        graph = img2num.export(run_dir, tmp_path / f"{family}.onnx")
        record = json.loads(graph.with_suffix(".json").read_text())
        assert record["input"] == {"name": "pixels", "shape": [None, 16, 16, 3], "layout": "NHWC", "dtype": "uint8"}
        assert record["pixel_type"] == "uint8" and record["channels"] == 3 and record["run"] == str(run_dir)
        x = _pixels((16, 16, 3), "uint8")
        np.save(tmp_path / f"{family}.npy", x)
        jobs.append([str(graph), str(tmp_path / f"{family}.npy"), str(tmp_path / f"{family}.out.npy")])
        expected[family] = img2num.predict(run_dir, x)
    done = subprocess.run([sys.executable, "-c", ORT_SCRIPT, json.dumps(jobs)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    for family in runs:
        got = np.load(tmp_path / f"{family}.out.npy")
        assert got.shape == (5,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[family], rtol=1e-4, err_msg=family)


def test_points_run_of_binary_arrays_exports_with_its_pixel_rule(trained_run, tiny_folder, tmp_path):
    import onnxruntime as ort

    import img2num

    graph = img2num.export(trained_run, tmp_path / "points.onnx")
    x = np.load(tiny_folder / "test.npz")["x"][:7]
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for pixels in (x, x * np.uint8(255)):  # 0/1 arrays and the same pictures as 0/255 are the same input
        (got,) = session.run(None, {"pixels": pixels})
        np.testing.assert_allclose(got, img2num.predict(trained_run, x), rtol=1e-4)


def test_predict_engine_onnx_equals_keras_with_intervals(runs, photos, tmp_path, capsys):
    run_dir = runs["cnn_gap"]
    images = photos.parent / "img"
    status, keras_out, err = run_cli(capsys, "predict", run_dir, images, "--interval", "0.5")
    assert status == 0, err
    status, onnx_out, err = run_cli(capsys, "predict", run_dir, images, "--interval", "0.5", "--engine", "onnx")
    assert status == 0, err
    assert (run_dir / "model.onnx").is_file() and json.loads((run_dir / "model.json").read_text())["fingerprint"]
    keras_rows = [line.split(",") for line in keras_out.splitlines()]
    onnx_rows = [line.split(",") for line in onnx_out.splitlines()]
    assert keras_rows[0] == onnx_rows[0] == ["path", "prediction", "lower", "upper"] and len(onnx_rows) == 25
    for mine, theirs in zip(onnx_rows[1:], keras_rows[1:]):
        assert mine[0] == theirs[0]
        np.testing.assert_allclose([float(v) for v in mine[1:]], [float(v) for v in theirs[1:]], rtol=1e-4)


def test_engine_keeps_the_graph_until_the_model_changes(runs, tmp_path):
    import shutil

    from img2num.engines import engine_run

    run_dir = tmp_path / "run"
    shutil.copytree(runs["mlp"], run_dir)
    x = _pixels((16, 16, 3), "uint8", seed=2)
    first = engine_run(run_dir, "onnx")
    assert first.model is None  # the graph came without loading Keras' model
    stamp = (run_dir / "model.onnx").stat().st_mtime_ns
    engine_run(run_dir, "onnx")
    assert (run_dir / "model.onnx").stat().st_mtime_ns == stamp  # kept: same fingerprint
    shutil.copy(runs["cnn"] / "model.keras", run_dir / "model.keras")
    changed = engine_run(run_dir, "onnx")
    assert json.loads((run_dir / "model.json").read_text())["model"] == "mlp"  # the run's config names it
    np.testing.assert_allclose(changed.predict(x), engine_run(run_dir, "keras").predict(x), rtol=1e-4)
    assert not np.allclose(changed.predict(x), first.predict(x))
    with pytest.raises(Exception, match="the ONNX graph takes uint8 pixels"):
        first.predict(x.astype(np.float32))


def test_export_command_writes_refuses_and_overwrites(runs, tmp_path, capsys):
    run_dir, output = runs["mlp"], tmp_path / "model.onnx"
    status, out, err = run_cli(capsys, "export", run_dir, "--format", "onnx", "--output", output)
    assert status == 0, err
    assert f"ONNX graph written to {output}" in out and output.is_file() and (tmp_path / "model.json").is_file()
    before = output.read_bytes()
    status, _, err = run_cli(capsys, "export", run_dir, "--output", output)
    assert status != 0 and "already exists" in one_line_error(err) and output.read_bytes() == before
    status, _, err = run_cli(capsys, "export", run_dir, "--output", output, "--overwrite")
    assert status == 0, err
    status, _, err = run_cli(capsys, "export", run_dir, "--output", tmp_path / "model.txt")
    assert status != 0 and "ends in .onnx" in one_line_error(err)
    status, _, err = run_cli(capsys, "export", tmp_path / "nowhere", "--output", tmp_path / "x.onnx")
    assert status != 0 and "no such run folder" in one_line_error(err) and not (tmp_path / "x.onnx").exists()


def test_a_model_that_cannot_export_gets_one_line(tmp_path):
    import keras

    from img2num.errors import Img2NumError
    from img2num.onnx_runtime import save_onnx

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.ops.sum(keras.ops.real(keras.ops.fft((inputs, inputs))[0]), axis=1), name="fft")
    with pytest.raises(Img2NumError) as error:
        save_onnx(model, tmp_path / "fft.onnx", (4,), "float32")
    assert str(error.value).startswith("cannot export fft to ONNX on jax: ") and "\n" not in str(error.value)
    assert not (tmp_path / "fft.onnx").exists()
