"""The dust task: RGB pictures of a solar panel with dust on it; the label is the dust rate.

The panel is split into square cells. Each image draws a dust rate p uniformly from 0 to 1 and
each cell is dusty with chance p, independently; the label is 100 p. The picture shows one draw,
so the share of dusty cells scatters around p and no model can recover p exactly: the best
possible error is known in closed form (`img2num.bayes.dust_bayes_reference`). Lighting varies
per image and dust shade per cell, so the mean colour alone is not a linear measure of p.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2num.bayes import dust_bayes_reference
from img2num.config import DustConfig
from img2num.data.arrays import Dataset
from img2num.data.tasks import Task, draw_task_splits, register_task, write_task_folder
from img2num.errors import Img2NumError

# Colours (RGB, 0..1). Dust is red-brown (red above blue), the panel and its busbars are blue
# (blue above red); the gap stays above 6 noise deviations at the darkest lighting, noise 0.02.
_PANEL = np.array([0.08, 0.16, 0.42], dtype=np.float32)
_BUSBAR = np.array([0.40, 0.48, 0.72], dtype=np.float32)
_DUST = np.array([0.75, 0.55, 0.25], dtype=np.float32)
_BUSBAR_EVERY = 16
_LIGHT_RANGE = (0.6, 1.0)
_SHADE_RANGE = (0.8, 1.0)
_CHUNK = 256


def generate_dust(
    n_samples: int,
    rng: np.random.Generator,
    height: int = 64,
    width: int = 64,
    cell: int = 2,
    noise: float = 0.02,
) -> Dataset:
    """Draw samples of the dust task.

    Args:
        n_samples: Number of images.
        rng: The random generator every draw comes from.
        height: Image height.
        width: Image width.
        cell: Side of a dust cell in pixels.
        noise: Standard deviation of the pixel noise (pixel values 0..1).

    Returns:
        A data set with `x` uint8 of shape (n_samples, height, width, 3) and `y` float32 of
        shape (n_samples,), the dust rate in percent (0 to 100).

    Raises:
        Img2NumError: `n_samples` is below 1.
    """
    if n_samples < 1:
        raise Img2NumError(f"the number of samples must be at least 1, got {n_samples}")
    rates = rng.random(n_samples)
    rows, cols = -(-height // cell), -(-width // cell)
    panel = _panel(height, width)
    x = np.empty((n_samples, height, width, 3), dtype=np.uint8)
    for start in range(0, n_samples, _CHUNK):
        chunk = rates[start : start + _CHUNK]
        dusty = rng.random((len(chunk), rows, cols)) < chunk[:, None, None]
        shade = rng.uniform(*_SHADE_RANGE, size=(len(chunk), rows, cols)).astype(np.float32)
        light = rng.uniform(*_LIGHT_RANGE, size=len(chunk)).astype(np.float32)
        dust = _to_pixels(shade, cell, height, width)[..., None] * _DUST
        image = np.where(_to_pixels(dusty, cell, height, width)[..., None], dust, panel)
        image = image * light[:, None, None, None]
        image += np.float32(noise) * rng.standard_normal(image.shape, dtype=np.float32)
        x[start : start + len(chunk)] = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return Dataset(x, (100 * rates).astype(np.float32), "dust")


def dusty_cells(x: np.ndarray, cell: int) -> np.ndarray:
    """The number of dusty cells in each dust image (N, H, W, 3), read off each cell's corner pixel."""
    corners = np.asarray(x)[:, ::cell, ::cell, :]
    return (corners[..., 0].astype(np.int32) > corners[..., 2].astype(np.int32)).reshape(len(x), -1).sum(axis=1)


def generate_dust_splits(config: DustConfig = DustConfig()) -> dict[str, Dataset]:
    """Draw the train, validation and test splits of the dust task.

    Each split has its own random stream spawned from `config.seed`, so a split's samples do
    not depend on the sizes of the others.

    Returns:
        The data set of each split with at least one sample, keyed by split name.
    """
    return draw_task_splits(
        config,
        lambda size, rng: generate_dust(size, rng, config.height, config.width, config.cell, config.noise),
        "dust",
    )


def write_dust(folder: str | Path, config: DustConfig = DustConfig(), overwrite: bool = False) -> dict[str, Path]:
    """Generate the dust splits and write each as `<folder>/<split>.npz`, with `task.json`.

    Raises:
        Img2NumError: A split file exists and `overwrite` is false, or every split is empty.
    """
    return write_task_folder(folder, config, generate_dust_splits, overwrite)


def _panel(height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) % _BUSBAR_EVERY == _BUSBAR_EVERY // 2)[:, None]
    cols = (np.arange(width) % _BUSBAR_EVERY == _BUSBAR_EVERY // 2)[None, :]
    return np.where((rows | cols)[..., None], _BUSBAR, _PANEL)


def _to_pixels(per_cell: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    return per_cell.repeat(cell, axis=1).repeat(cell, axis=2)[:, :height, :width]


def _reference(config: DustConfig) -> tuple[float, str]:
    exact = config.noise <= 0.02
    return dust_bayes_reference(config.cells).mse, (
        f"{'exact' if exact else 'lower bound (noise above 0.02 can hide cells)'}: "
        f"100^2 / (6 (cells + 2)) with {config.cells} cells, predicting 100 (K + 1) / (cells + 2) "
        "from the number K of dusty cells"
    )


def _reference_predictions(info: dict, x: np.ndarray) -> np.ndarray:
    config = DustConfig(**(info.get("options") or {}))
    return dust_bayes_reference(config.cells).predict(dusty_cells(x, config.cell))


DUST_TASK = register_task(
    Task(
        name="dust",
        label="dust rate in percent: the chance that any one cell of the panel is dusty",
        config=DustConfig,
        reference=_reference,
        predict=_reference_predictions,
    )
)
