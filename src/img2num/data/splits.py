"""Turning what the user gave (data sets, files, folders, label CSVs) into train, validation and
test splits, and the record of those splits that a run keeps."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from img2num.config import DataConfig
from img2num.data.arrays import Dataset, as_dataset, load_split_folder, shape_text
from img2num.data.files import ImageFiles, ImageTable, read_image_table
from img2num.data.table import BadRow
from img2num.errors import Img2NumError

SPLIT_FILE = "split.csv"
SKIPPED_FILE = "skipped.csv"


class Splits(dict):
    """The splits of a job keyed "train", "val" and maybe "test" (a plain dict of `Dataset` or
    `ImageFiles`), with the rows skipped on the way.

    Attributes:
        skipped: Rows and files left out with `skip_bad`, in the order met.
        rows: Data rows read from label CSVs (0 for array files).
        options: How the label CSVs and image files were read.
        split_column: The label CSV's column that put each row in its split, or None where the
            splits were drawn at random or given.
    """

    def __init__(
        self, splits: dict, skipped: list[BadRow] | None = None, rows: int = 0, options=None, split_column=None
    ) -> None:
        super().__init__(splits)
        self.skipped = list(skipped or [])
        self.rows = rows
        self.options = options
        self.split_column = split_column


def resolve_splits(
    data: Dataset | ImageFiles | str | Path,
    val: Dataset | ImageFiles | str | Path | None = None,
    test: Dataset | ImageFiles | str | Path | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    options: DataConfig | None = None,
) -> Splits:
    """The labelled train, validation and (when given) test splits of a training job.

    Args:
        data: Training data: a `Dataset` or `ImageFiles`; an `.npz` file; a folder from
            `img2num generate` (its `val.npz` and `test.npz` are used when present); a label CSV
            naming image files, or a folder holding one. A CSV's split column (train/val/test) is
            respected; without one, `options.test_fraction` and `val_fraction` of its rows are
            held out at random.
        val: Validation data; when absent (and not in the folder or CSV), `val_fraction` of the
            training data is held out at random.
        test: Test data, when given.
        val_fraction: Share of the training data held out when there is no validation data.
        seed: Seed of the held-out draws.
        options: How label CSVs and image files are read (ignored for arrays).

    Returns:
        The splits keyed "train", "val" and, when given, "test"; all with the same image shape.
        Image data within `options.cache_mb` is decoded into memory; larger data stays on disk.

    Raises:
        Img2NumError: Bad or unlabelled data, too few samples to hold out, or splits whose image
            shapes differ.
    """
    options = options or DataConfig()
    skipped, rows, split_column = [], 0, None
    csv_path = label_csv(data)
    if csv_path is not None:
        table = read_image_table(csv_path, options)
        splits = _split_table(table, val_fraction, options.test_fraction, seed)
        skipped, rows = table.skipped, table.total
        split_column = None if table.splits is None else options.split_column
    elif isinstance(data, (str, Path)) and Path(data).is_dir():
        splits = load_split_folder(data)
    else:
        splits = {"train": _labelled(data)}
    spec = splits["train"].spec
    for name, given in (("val", val), ("test", test)):
        if given is None:
            continue
        given_csv = label_csv(given)
        if given_csv is not None:
            table = read_image_table(given_csv, options, spec=spec)
            splits[name] = table.data
            skipped, rows = skipped + table.skipped, rows + table.total
        else:
            splits[name] = _labelled(given)
    if "val" not in splits:
        splits.update(hold_out(splits["train"], val_fraction, seed))
    shape = splits["train"].image_shape
    for name, split in splits.items():
        if split.image_shape != shape:
            raise Img2NumError(
                f"{split.source}: {name} images are {shape_text(split.image_shape)} but training "
                f"images are {shape_text(shape)}"
            )
    order = {name: splits[name] for name in ("train", "val", "test") if name in splits}
    return Splits(order, skipped, rows, options, split_column)


def label_csv(data) -> Path | None:
    """The label CSV that `data` names: a `.csv` path, or the one CSV in a folder without
    `train.npz`; None when `data` is something else.

    Raises:
        Img2NumError: A folder without `train.npz` holds no CSV, or several and no `labels.csv`.
    """
    if not isinstance(data, (str, Path)):
        return None
    path = Path(data)
    if path.suffix.lower() == ".csv":
        return path
    if not path.is_dir() or (path / "train.npz").exists():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if len(found) == 1:
        return found[0]
    if (path / "labels.csv").is_file():
        return path / "labels.csv"
    if not found:
        if not any(path.iterdir()):
            raise Img2NumError(f"{path}: is an empty folder; expected images and a labels CSV")
        raise Img2NumError(f"{path}: holds no train.npz and no labels CSV naming its images")
    raise Img2NumError(
        f"{path}: holds several CSV files ({', '.join(p.name for p in found)}) and no labels.csv; name one"
    )


def hold_out(data: Dataset | ImageFiles, fraction: float, seed: int) -> dict[str, Dataset | ImageFiles]:
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


def split_records(splits: dict) -> dict[str, str]:
    """The CSV files a run keeps about its image data: `split.csv` (`path,label,split`, absolute
    paths, so the file is itself a label CSV that reproduces the splits) and `skipped.csv`
    (`where,path,reason`) when rows were skipped. Empty for array data."""
    records = {}
    if all(getattr(split, "paths", None) is not None for split in splits.values()):
        rows = [
            (os.path.abspath(path), repr(float(label)), name)
            for name, split in splits.items()
            for path, label in zip(split.paths, split.y)
        ]
        records[SPLIT_FILE] = _csv_text(["path", "label", "split"], rows)
    skipped = getattr(splits, "skipped", [])
    if skipped:
        records[SKIPPED_FILE] = _csv_text(["where", "path", "reason"], [(b.where, b.path, b.reason) for b in skipped])
    return records


def _split_table(table: ImageTable, val_fraction: float, test_fraction: float, seed: int) -> dict:
    data, source = table.data, table.data.source
    if table.splits is not None:
        names = np.asarray(table.splits)
        splits = {
            name: data.take(np.flatnonzero(names == name), f"{source} ({name} rows)")
            for name in ("train", "val", "test")
            if (names == name).any()
        }
        if "train" not in splits:
            raise Img2NumError(f"{source}: no row is in the train split (split column)")
        return splits
    count = len(data)
    n_test = int(round(count * test_fraction))
    n_val = int(round(count * val_fraction))
    if n_val < 1 or count - n_val - n_test < 1 or (test_fraction > 0 and n_test < 1):
        raise Img2NumError(
            f"{source}: {count} rows are too few to hold out a validation share of {val_fraction}"
            + (f" and a test share of {test_fraction}" if test_fraction else "")
        )
    order = np.random.default_rng(seed).permutation(count)
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {
        name: data.take(np.sort(parts[name]), f"{source} ({name} rows, seed {seed})")
        for name in ("train", "val", "test")
        if len(parts[name])
    }


def _labelled(data) -> Dataset | ImageFiles:
    if isinstance(data, ImageFiles):
        if data.y is None:
            raise Img2NumError(f"{data.source}: has no labels; labels are needed here")
        return data
    return as_dataset(data, require_labels=True)


def _csv_text(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
