"""Shared fixtures: tiny points data sets and one trained run reused across tests."""

from __future__ import annotations

import atexit
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

from img2num import backends  # noqa: E402
from img2num.config import PointsConfig, TrainConfig  # noqa: E402

TINY = PointsConfig(height=8, width=8, train=160, val=40, test=30, seed=3)

torch_installed = pytest.mark.skipif(not backends._installed("torch"), reason="PyTorch is not installed")


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
    import csv

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
