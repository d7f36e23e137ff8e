"""Label files: a CSV naming each image (relative to the CSV) and its number, checked row by row.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.config import DataConfig
from img2num.data.video import FRAME_COLUMN, frame_row, is_video_file
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
        paths: Image path of each usable row (relative paths joined to the CSV's folder); for a
            row naming a video, the frame reference `video#t=seconds` (`img2num.data.video`).
        labels: float32 label of each usable row, or None when the file has no label column.
        splits: Split name of each usable row, or None when the file has no split column.
        bad: Rows that cannot be used, in file order.
        total: Number of data rows in the file.
        groups: Group of each usable row (its cell's text, trimmed), or None without a group column.
        times: Time of each usable row (its cell's text, trimmed), or None without a time column;
            every one parses as the same kind (`parse_time`).
    """

    source: str
    rows: list[int]
    paths: list[str]
    labels: np.ndarray | None
    splits: list[str] | None
    bad: list[BadRow]
    total: int
    groups: list[str] | None = None
    times: list[str] | None = None


def read_label_table(path: str | Path, options: DataConfig = DataConfig(), require_labels: bool = True) -> LabelTable:
    """Read a label CSV and check every row (the image files themselves are checked elsewhere).

    Args:
        path: The CSV file.
        options: Column names (with `group_column` and `time_column`, those columns are read).
        require_labels: Fail when the file has no label column.

    Returns:
        The usable rows and the bad ones (a missing or non-numeric or non-finite label, an empty
        path, a duplicate path, an unknown split name, an empty group, an empty or unreadable
        time).

    Raises:
        Img2NumError: The file is missing, unreadable, empty, lacks a named column, or its time
            column mixes kinds (dates, date-times, numbers).
    """
    path = Path(path)
    header, records = read_csv_rows(path, "the file and label columns")
    path_col = _column(path, header, options.path_column, PATH_COLUMNS, "--path-column")
    label_col = _column(path, header, options.label_column, LABEL_COLUMNS, "--label-column", required=require_labels)
    split_col = header.index(options.split_column) if options.split_column in header else None
    group_col, time_col = (
        None if name is None else _column(path, header, name, (), option)
        for name, option in ((options.group_column, "--group-column"), (options.time_column, "--time-column"))
    )
    # Read only on rows naming a video, so one file may hold a frame time and a time column.
    frame_col = _column(path, header, options.frame_column, (FRAME_COLUMN,), "--frame-column", required=False)
    rows, paths, labels, splits, bad, seen = [], [], [], [], [], {}
    groups, times, first_time = [], [], None
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
        if problem is None and group_col is not None and not cells[group_col].strip():
            problem = f"empty {header[group_col]!r} cell"
        if problem is None and time_col is not None:
            problem = _time_problem(cells[time_col].strip(), header[time_col])
            if problem is None:
                first_time = _same_kind(cells[time_col].strip(), first_time, where, number)
        if problem is None and is_video_file(name):
            cell = None if frame_col is None else cells[frame_col].strip()
            image, problem = frame_row(image, cell, FRAME_COLUMN if frame_col is None else header[frame_col])
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
        groups.append(cells[group_col].strip() if group_col is not None else "")
        times.append(cells[time_col].strip() if time_col is not None else "")
    return LabelTable(
        source=str(path),
        rows=rows,
        paths=paths,
        labels=None if label_col is None else np.asarray(labels, np.float32),
        splits=None if split_col is None else splits,
        bad=bad,
        total=len(records),
        groups=None if group_col is None else groups,
        times=None if time_col is None else times,
    )


def read_csv_rows(path: Path, naming: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file's header (cells stripped) and its non-blank rows with their row numbers.

    Args:
        path: The CSV file.
        naming: What the header should name, for the message about an empty file.

    Raises:
        Img2NumError: The file is a folder, missing, unreadable, empty, or has no rows.
    """
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected a CSV file")
    if not path.exists():
        raise Img2NumError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            records = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise Img2NumError(f"{path}: not a readable CSV file ({error})") from None
    if not header or not any(cell.strip() for cell in header):
        raise Img2NumError(f"{path}: is empty; expected a header row naming {naming}")
    if not records:
        raise Img2NumError(f"{path}: has a header but no rows")
    return [cell.strip() for cell in header], records


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


def parse_label(text: str, column: str) -> tuple[float | None, str | None]:
    """A label cell (trimmed) of column `column` as (value, None), or (None, why it is no label)."""
    return _label(text, column)


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


TIME_KINDS = ("date", "date-time", "number")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_time(text: str) -> tuple[str, float] | None:
    """A time cell as (kind, value): an ISO date ("date", seconds since 1970 at midnight UTC), an
    ISO date-time ("date-time", seconds since 1970; without a time zone taken as UTC) or a plain
    number ("number", itself); None when it is none of them."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        return ("number", value) if math.isfinite(value) else None
    try:
        if _DATE.fullmatch(text):
            moment = datetime.datetime.combine(datetime.date.fromisoformat(text), datetime.time())
            kind = "date"
        elif _DATE.match(text) and len(text) > 10 and text[10] in "T ":
            moment, kind = datetime.datetime.fromisoformat(text), "date-time"
        else:
            return None
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return kind, moment.timestamp()


def time_values(times) -> tuple[str, np.ndarray]:
    """The kind and the float64 values of time cells that `read_label_table` accepted."""
    parsed = [parse_time(text) for text in times]
    return (parsed[0][0] if parsed else "number"), np.asarray([value for _, value in parsed], np.float64)


def _time_problem(text: str, column: str) -> str | None:
    if not text:
        return f"empty {column!r} cell"
    if parse_time(text) is None:
        return f"{column} {text!r} is not an ISO date (2024-05-31), ISO date-time (2024-05-31T14:30:00) or plain number"
    return None


def _same_kind(text: str, first: tuple[str, str, int] | None, where: str, number: int) -> tuple[str, str, int]:
    """The first time's (kind, text, row); fails when `text` is of another kind."""
    kind = parse_time(text)[0]
    if first is None:
        return kind, text, number
    if kind != first[0]:
        raise Img2NumError(
            f"{where}: time {text!r} is a {kind} but row {first[2]} holds a {first[0]} ({first[1]!r}); "
            "a time column holds one kind: ISO dates, ISO date-times or plain numbers"
        )
    return first
