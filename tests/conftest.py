"""Shared fixtures: tiny points data sets and one trained run reused across tests."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import pytest  # noqa: E402

from img2num.config import PointsConfig, TrainConfig  # noqa: E402

TINY = PointsConfig(height=8, width=8, train=160, val=40, test=30, seed=3)


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
