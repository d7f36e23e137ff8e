"""The points task: n points dropped on a blank image, the label is n (the tutorial's data set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2num.bayes import points_bayes_reference
from img2num.config import PointsConfig
from img2num.data.arrays import Dataset
from img2num.data.tasks import Task, draw_task_splits, register_task, write_task_folder
from img2num.errors import Img2NumError

# Points drawn per vectorised chunk: bounds memory for very large data sets.
_POINTS_PER_CHUNK = 8_000_000
# Above this many pixels the exact reference (a pixels x pixels table) takes too long.
_REFERENCE_MAX_PIXELS = 64 * 64


def generate_points(
    n_samples: int,
    rng: np.random.Generator,
    height: int = 16,
    width: int = 16,
    channels: int = 1,
) -> Dataset:
    """Draw samples of the points task.

    Each sample draws n uniformly from 0..height*width-1, then drops n points on uniformly drawn
    pixels (two points may land on the same pixel), setting each to 1. The label is n, so the
    number of lit pixels understates it when points collide.

    Args:
        n_samples: Number of images.
        rng: The random generator every draw comes from.
        height: Image height.
        width: Image width.
        channels: Channels; each one holds the same points.

    Returns:
        A data set with `x` uint8 of shape (n_samples, height, width, channels) holding 0 and 1,
        and `y` float32 of shape (n_samples,).

    Raises:
        Img2NumError: `n_samples` is below 1.
    """
    if n_samples < 1:
        raise Img2NumError(f"the number of samples must be at least 1, got {n_samples}")
    pixels = height * width
    labels = rng.integers(0, pixels, size=n_samples)
    flat = np.zeros((n_samples, pixels), dtype=np.uint8)
    chunk = max(1, _POINTS_PER_CHUNK // pixels)
    for start in range(0, n_samples, chunk):
        counts = labels[start : start + chunk]
        rows = np.repeat(np.arange(len(counts)), counts)
        cols = rng.integers(0, pixels, size=len(rows))
        flat[start : start + len(counts)].reshape(-1)[rows * pixels + cols] = 1
    x = flat.reshape(n_samples, height, width, 1)
    if channels > 1:
        x = np.repeat(x, channels, axis=3)
    return Dataset(x, labels.astype(np.float32), "points")


def generate_points_splits(config: PointsConfig = PointsConfig()) -> dict[str, Dataset]:
    """Draw the train, validation and test splits of the points task.

    Each split has its own random stream spawned from `config.seed`, so a split's samples do
    not depend on the sizes of the others.

    Args:
        config: Image size, split sizes and seed.

    Returns:
        The data set of each split with at least one sample, keyed by split name.
    """
    return draw_task_splits(
        config,
        lambda size, rng: generate_points(size, rng, config.height, config.width, config.channels),
        "points",
    )


def write_points(
    folder: str | Path, config: PointsConfig = PointsConfig(), overwrite: bool = False
) -> dict[str, Path]:
    """Generate the points splits and write each as `<folder>/<split>.npz`, with `task.json`.

    Args:
        folder: Output folder, created if needed.
        config: Image size, split sizes and seed.
        overwrite: Replace existing split files instead of failing.

    Returns:
        The path written for each split.

    Raises:
        Img2NumError: A split file exists and `overwrite` is false, or every split is empty.
    """
    return write_task_folder(folder, config, generate_points_splits, overwrite)


def _reference(config: PointsConfig) -> tuple[float | None, str]:
    if config.height * config.width > _REFERENCE_MAX_PIXELS:
        return None, f"not computed above {_REFERENCE_MAX_PIXELS} pixels"
    return (
        points_bayes_reference(config.height, config.width).mse,
        "exact: the posterior mean of n given the number of lit pixels (occupancy distribution)",
    )


def _reference_predictions(info: dict, x: np.ndarray) -> np.ndarray | None:
    if info.get("reference_mse") is None:  # not computed for images this large
        return None
    options = info.get("options") or {}
    lit = (np.asarray(x)[..., 0] > 0).reshape(len(x), -1).sum(axis=1)
    return points_bayes_reference(options["height"], options["width"]).predict(lit)


POINTS_TASK = register_task(
    Task(
        name="points",
        label="number of points dropped, 0 to height*width-1",
        config=PointsConfig,
        reference=_reference,
        predict=_reference_predictions,
    )
)
