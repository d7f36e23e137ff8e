"""Synthetic tasks as data folders: the split files plus `task.json`, which says which task made
them, with which options, and the best error any model can reach on it (the Bayes reference).
Each task declares itself (`points.py`, `dust.py`) as a `Task` and registers it here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.data.arrays import Dataset, save_npz
from img2num.errors import Img2NumError
from img2num.io import write_json

TASK_FILE = "task.json"


@dataclass(frozen=True)
class Task:
    """A synthetic task's metadata: what `task.json` says of it and how to reach its reference.

    Attributes:
        name: The task's name, `task` in `task.json` (`points`, `dust`).
        label: What the label means, in words.
        config: The dataclass of the task's options (`PointsConfig`, ...).
        reference: From the options, the Bayes reference: (expected squared error of the best
            possible prediction, or None when not computed; how it was found).
        predict: From the task's metadata (as `read_task` returns it) and images (N, H, W, C)
            its generator drew, the Bayes-optimal prediction of each image, or None. It may
            raise KeyError, TypeError, IndexError or Img2NumError on metadata it cannot use.
    """

    name: str
    label: str
    config: type
    reference: Callable[[object], tuple[float | None, str]]
    predict: Callable[[dict, np.ndarray], np.ndarray | None]


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add `task` to the known synthetic tasks.

    Raises:
        ValueError: Another task has the same name or options type.
    """
    for known in _TASKS.values():
        if known.name == task.name or known.config is task.config:
            raise ValueError(f"task {task.name!r} clashes with the registered task {known.name!r}")
    _TASKS[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    """The registered synthetic tasks' names, in the order they were registered."""
    return tuple(_TASKS)


def task_info(config: object) -> dict:
    """What `task.json` records for a task: name, label, options and Bayes reference.

    Args:
        config: A registered task's options (`PointsConfig`, `DustConfig`).

    Returns:
        `task`, `label` (what the number means), `options` (the generator's configuration),
        `reference_mse` (expected squared error of the best possible prediction, or None when
        not computed) and `reference` (how it was found).

    Raises:
        TypeError: `config` is not the options of a registered task.
    """
    options = dataclasses.asdict(config)
    task = next((task for task in _TASKS.values() if isinstance(config, task.config)), None)
    if task is None:
        raise TypeError(f"not a task configuration: {config!r}")
    reference_mse, reference = task.reference(config)
    return {
        "task": task.name,
        "label": task.label,
        "options": options,
        "reference_mse": reference_mse,
        "reference": reference,
    }


def draw_task_splits(
    config: object, draw: Callable[[int, np.random.Generator], Dataset], task: str
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
    config: object,
    draw_splits: Callable[[object], dict[str, Dataset]],
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
    try:
        task = _TASKS.get(info["task"])
        return None if task is None else task.predict(info, x)
    except (KeyError, TypeError, IndexError, Img2NumError):
        return None
