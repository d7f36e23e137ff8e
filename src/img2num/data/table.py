"""Label files: a CSV naming each image (relative to the CSV) and its number, checked row by row.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.config import DataConfig
from img2num.errors import Img2NumError

PATH_COLUMNS = ("file", "path")
LABEL_COLUMNS = ("label", "value")
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


@dataclass(frozen=True)
class BadRow:
    """A row or file that cannot be used.

    Attributes:
        where: The label file and row (`labels.csv row 4`), or "" for a file named directly.
        path: The image file, as the row names it.
        reason: What is wrong.
    """

    where: str
    path: str
    reason: str

    @property
    def message(self) -> str:
        return ": ".join(part for part in (self.where, self.path, self.reason) if part)


@dataclass(frozen=True)
class LabelTable:
    """The usable rows of a label file, and the bad ones.

    Attributes:
        source: The CSV file.
        rows: Row number of each usable row.
        paths: Image path of each usable row (relative paths joined to the CSV's folder).
        labels: float32 label of each usable row, or None when the file has no label column.
        splits: Split name of each usable row, or None when the file has no split column.
        bad: Rows that cannot be used, in file order.
        total: Number of data rows in the file.
    """

    source: str
    rows: list[int]
    paths: list[str]
    labels: np.ndarray | None
    splits: list[str] | None
    bad: list[BadRow]
    total: int


def read_label_table(path: str | Path, options: DataConfig = DataConfig(), require_labels: bool = True) -> LabelTable:
    """Read a label CSV and check every row (the image files themselves are checked elsewhere).

    Args:
        path: The CSV file.
        options: Column names.
        require_labels: Fail when the file has no label column.

    Returns:
        The usable rows and the bad ones (a missing or non-numeric or non-finite label, an empty
        path, a duplicate path, an unknown split name).

    Raises:
        Img2NumError: The file is missing, unreadable, empty, or lacks a named column.
    """
    path = Path(path)
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected a CSV file")
    if not path.exists():
        raise Img2NumError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            records = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise Img2NumError(f"{path}: not a readable CSV file ({error})") from None
    if not header or not any(cell.strip() for cell in header):
        raise Img2NumError(f"{path}: is empty; expected a header row naming the file and label columns")
    header = [cell.strip() for cell in header]
    path_col = _column(path, header, options.path_column, PATH_COLUMNS, "--path-column")
    label_col = _column(path, header, options.label_column, LABEL_COLUMNS, "--label-column", required=require_labels)
    split_col = header.index(options.split_column) if options.split_column in header else None
    records = [(number, row) for number, row in records if any(cell.strip() for cell in row)]
    if not records:
        raise Img2NumError(f"{path}: has a header but no rows")

    rows, paths, labels, splits, bad, seen = [], [], [], [], [], {}
    for number, row in records:
        where = f"{path} row {number}"
        cells = row + [""] * (len(header) - len(row))
        name = cells[path_col].strip()
        if not name:
            bad.append(BadRow(where, "", f"empty {header[path_col]!r} cell"))
            continue
        image = str(path.parent / name)
        problem = label = split = None
        if label_col is not None:
            label, problem = _label(cells[label_col].strip(), header[label_col])
        if problem is None and split_col is not None:
            split = SPLIT_NAMES.get(cells[split_col].strip().lower())
            if split is None:
                problem = f"split {cells[split_col].strip()!r} is not train, val or test"
        # A duplicate repeats a usable row; a path on a row that is bad anyway is no duplicate.
        key = os.path.normcase(os.path.abspath(image))
        if problem is None and key in seen:
            problem = f"duplicate of row {seen[key]}"
        elif problem is None:
            seen[key] = number
        if problem is not None:
            bad.append(BadRow(where, name, problem))
            continue
        rows.append(number)
        paths.append(image)
        labels.append(label)
        splits.append(split)
    return LabelTable(
        source=str(path),
        rows=rows,
        paths=paths,
        labels=None if label_col is None else np.asarray(labels, np.float32),
        splits=None if split_col is None else splits,
        bad=bad,
        total=len(records),
    )


def _column(path: Path, header: list[str], chosen: str | None, defaults: tuple[str, ...], option: str, required: bool = True):
    names = (chosen,) if chosen else defaults
    for name in names:
        if name in header:
            return header.index(name)
    if not required and not chosen:
        return None
    wanted = "column " + (repr(chosen) if chosen else " or ".join(repr(n) for n in defaults))
    raise Img2NumError(f"{path}: has no {wanted} (found: {', '.join(header)}); choose one with {option}")


# A label is a plain decimal number as a spreadsheet writes it: sign, digits, one decimal point,
# exponent. Python's float() also takes "1_000", "infinity" and non-ASCII digits; refusing them
# keeps "1_000" as doubtful as "1,234".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _label(text: str, column: str) -> tuple[float | None, str | None]:
    if not text:
        return None, f"missing {column!r}"
    if not _NUMBER.fullmatch(text):
        try:
            finite = math.isfinite(float(text))
        except ValueError:
            finite = True
        if not finite:
            return None, f"{column} {text!r} is not a finite number"
        hint = "; write digits without separators, such as 1234.5" if any(c in text for c in ",_ ") else ""
        return None, f"{column} {text!r} is not a number{hint}"
    value = float(text)
    if not abs(value) <= _FLOAT32_MAX:  # labels are float32: 1e300 would become infinity
        return None, f"{column} {text!r} is too large for a 32-bit float (at most ±3.4e38)"
    return value, None
