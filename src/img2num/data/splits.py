"""Turning what the user gave (data sets, files, folders) into train, validation and test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2num.data.arrays import Dataset, as_dataset, load_split_folder, shape_text
from img2num.errors import Img2NumError


def resolve_splits(
    data: Dataset | str | Path,
    val: Dataset | str | Path | None = None,
    test: Dataset | str | Path | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Dataset]:
    """The labelled train, validation and (when given) test splits of a training job.

    Args:
        data: Training data: a `Dataset`, an `.npz` file, or a folder from `img2num generate`
            (its `val.npz` and `test.npz` are used when present).
        val: Validation data; when absent (and not in the folder), `val_fraction` of the
            training data is held out at random.
        test: Test data, when given.
        val_fraction: Share of the training data held out when there is no validation data.
        seed: Seed of the held-out draw.

    Returns:
        The splits keyed "train", "val" and, when given, "test"; all with the same image shape.

    Raises:
        Img2NumError: Bad or unlabelled data, too few samples to hold out, or splits whose image
            shapes differ.
    """
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        splits = load_split_folder(data)
    else:
        splits = {"train": as_dataset(data, require_labels=True)}
    if val is not None:
        splits["val"] = as_dataset(val, require_labels=True)
    if test is not None:
        splits["test"] = as_dataset(test, require_labels=True)
    if "val" not in splits:
        splits.update(hold_out(splits["train"], val_fraction, seed))
    shape = splits["train"].image_shape
    for name, split in splits.items():
        if split.image_shape != shape:
            raise Img2NumError(
                f"{split.source}: {name} images are {shape_text(split.image_shape)} but training "
                f"images are {shape_text(shape)}"
            )
    return splits


def hold_out(data: Dataset, fraction: float, seed: int) -> dict[str, Dataset]:
    """Split `data` at random into a training share and a validation share of `fraction`.

    Raises:
        Img2NumError: Either share would be empty.
    """
    count = int(round(len(data) * fraction))
    if count < 1 or count >= len(data):
        raise Img2NumError(
            f"{data.source}: {len(data)} samples are too few to hold out a validation share of "
            f"{fraction}; give a validation set"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    return {
        "train": data.take(np.sort(order[count:]), f"{data.source} (training share)"),
        "val": data.take(np.sort(order[:count]), f"{data.source} (held-out validation share)"),
    }
