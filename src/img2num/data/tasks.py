"""Synthetic tasks as data folders: the split files plus `task.json`, which says which task made
them, with which options, and the best error any model can reach on it (the Bayes reference)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from img2num.config import DustConfig, PointsConfig
from img2num.data.arrays import Dataset, save_npz
from img2num.errors import Img2NumError
from img2num.io import write_json

TASK_FILE = "task.json"
TASK_NAMES = ("points", "dust")
# Above this many pixels the exact points reference (a pixels x pixels table) takes too long.
_POINTS_REFERENCE_MAX_PIXELS = 64 * 64

TaskConfig = PointsConfig | DustConfig


def task_info(config: TaskConfig) -> dict:
    """What `task.json` records for a task: name, label, options and Bayes reference.

    Returns:
        `task`, `label` (what the number means), `options` (the generator's configuration),
        `reference_mse` (expected squared error of the best possible prediction, or None when
        not computed) and `reference` (how it was found).
    """
    from img2num.bayes import dust_bayes_reference, points_bayes_reference

    options = dataclasses.asdict(config)
    if isinstance(config, PointsConfig):
        pixels = config.height * config.width
        known = pixels <= _POINTS_REFERENCE_MAX_PIXELS
        return {
            "task": "points",
            "label": "number of points dropped, 0 to height*width-1",
            "options": options,
            "reference_mse": points_bayes_reference(config.height, config.width).mse if known else None,
            "reference": (
                "exact: the posterior mean of n given the number of lit pixels (occupancy distribution)"
                if known
                else f"not computed above {_POINTS_REFERENCE_MAX_PIXELS} pixels"
            ),
        }
    if isinstance(config, DustConfig):
        exact = config.noise <= 0.02
        return {
            "task": "dust",
            "label": "dust rate in percent: the chance that any one cell of the panel is dusty",
            "options": options,
            "reference_mse": dust_bayes_reference(config.cells).mse,
            "reference": (
                f"{'exact' if exact else 'lower bound (noise above 0.02 can hide cells)'}: "
                f"100^2 / (6 (cells + 2)) with {config.cells} cells, predicting 100 (K + 1) / (cells + 2) "
                "from the number K of dusty cells"
            ),
        }
    raise TypeError(f"not a task configuration: {config!r}")


def draw_task_splits(
    config: TaskConfig, draw: Callable[[int, np.random.Generator], Dataset], task: str
) -> dict[str, Dataset]:
    """Draw the train, validation and test splits of a synthetic task.

    Each split has its own random stream spawned from `config.seed`, so a split's samples do
    not depend on the sizes of the others.

    Args:
        config: The task's options, including split sizes and seed.
        draw: Draws that many samples from the given generator.
        task: The task's name, the start of each split's source (`points:train`, ...).

    Returns:
        The data set of each split with at least one sample, keyed by split name.
    """
    streams = np.random.SeedSequence(config.seed).spawn(len(config.split_sizes))
    splits = {}
    for (split, size), stream in zip(config.split_sizes.items(), streams):
        if size:
            data = draw(size, np.random.default_rng(stream))
            splits[split] = Dataset(data.x, data.y, f"{task}:{split}")
    return splits


def write_task_folder(
    folder: str | Path,
    config: TaskConfig,
    draw_splits: Callable[[TaskConfig], dict[str, Dataset]],
    overwrite: bool = False,
) -> dict[str, Path]:
    """Draw a task's splits and write each as `<folder>/<split>.npz`, with `task.json` beside them.

    Args:
        folder: Output folder, created if needed.
        config: The task's options, including split sizes.
        draw_splits: Draws the splits from `config`.
        overwrite: Replace existing split files instead of failing.

    Returns:
        The path written for each split.

    Raises:
        Img2NumError: A split file exists and `overwrite` is false, or every split is empty.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"{folder}: exists and is not a folder")
    targets = {split: folder / f"{split}.npz" for split, size in config.split_sizes.items() if size}
    if not targets:
        raise Img2NumError("every split size is 0; nothing to generate")
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise Img2NumError(f"{existing[0]}: already exists; pass --overwrite to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {split: save_npz(targets[split], data) for split, data in draw_splits(config).items()}
    write_json(folder / TASK_FILE, task_info(config))
    return paths


def read_task(data) -> dict | None:
    """The task metadata of a data folder, or None when `data` is not a folder with `task.json`.

    Raises:
        Img2NumError: `task.json` exists but is not valid task metadata.
    """
    if not isinstance(data, (str, Path)) or not (Path(data) / TASK_FILE).is_file():
        return None
    path = Path(data) / TASK_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Img2NumError(f"{path}: not readable task metadata ({error})") from None
    reference = info.get("reference_mse") if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("task"), str) or not (
        reference is None or (isinstance(reference, (int, float)) and reference >= 0)
    ):
        raise Img2NumError(f"{path}: expected a JSON object with 'task' (a name) and 'reference_mse' (a number or null)")
    return info


def reference_predictions(info: dict, x: np.ndarray) -> np.ndarray | None:
    """The Bayes-optimal prediction for each image of a known task, or None for other data.

    Args:
        info: Task metadata, as `read_task` returns it.
        x: Images (N, H, W, C) drawn by that task's generator.
    """
    from img2num.bayes import dust_bayes_reference, points_bayes_reference

    options = info.get("options") or {}
    try:
        if info["task"] == "points" and info.get("reference_mse") is not None:
            lit = (np.asarray(x)[..., 0] > 0).reshape(len(x), -1).sum(axis=1)
            return points_bayes_reference(options["height"], options["width"]).predict(lit)
        if info["task"] == "dust":
            from img2num.data.dust import dusty_cells

            config = DustConfig(**options)
            return dust_bayes_reference(config.cells).predict(dusty_cells(x, config.cell))
    except (KeyError, TypeError, IndexError, Img2NumError):
        return None
    return None
