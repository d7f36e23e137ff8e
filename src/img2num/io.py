"""Writes that never leave a half-written file or folder looking finished, the CSV text they write,
and progress lines for the terminal."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from img2num import interrupts
from img2num.errors import Img2NumError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The file gets the permissions the umask gives a new file, or those of the file it replaces.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(path.parent, f".{path.name}.", ".tmp", _new_file)
    try:
        with interrupts.temporary(tmp):
            yield tmp
            if path.is_file():
                shutil.copymode(path, tmp)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, value) -> Path:
    """Write a JSON file atomically, indented for people (see `json_text`)."""
    return write_text(path, json_text(value))


def json_text(value) -> str:
    """`value` as strict JSON, indented: a number that is not finite (an undefined R^2) is null,
    since JSON has no NaN."""
    return json.dumps(_finite(value), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


@contextlib.contextmanager
def atomic_folder(folder: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place when the block succeeds.

    An interrupted or failed block leaves nothing at `folder`, so a half-made run or results
    folder is never mistaken for a finished one. An existing folder is replaced only when
    `overwrite` is true, and only after the new one is complete.

    Raises:
        Img2NumError: `folder` exists and `overwrite` is false, or it exists and is not a folder.
    """
    folder = Path(folder)
    check_replaceable(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(folder.parent, f".{folder.name}.", ".partial", os.mkdir)
    try:
        with interrupts.temporary(tmp):
            yield tmp
            check_replaceable(folder, overwrite)
            # Ctrl-C waits for the renames: an old run is never left moved aside with no new one.
            with interrupts.deferred():
                interrupts.checkpoint("replacing")
                if folder.exists():
                    # rename() may replace an empty folder, so a fresh unique name takes the old one.
                    old = _create_unique(folder.parent, f".{folder.name}.", ".old", os.mkdir)
                    os.replace(folder, old)
                    os.replace(tmp, folder)
                    shutil.rmtree(old)
                else:
                    os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _create_unique(parent: Path, prefix: str, suffix: str, create) -> Path:
    """Create a file or folder of a new unique name in `parent` with `create(path)`.

    Unlike `tempfile`'s, which are private (mode 0600, 0700) and keep that mode once renamed
    into place, these follow the umask as any file the user makes does.
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            create(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free temporary name {prefix}*{suffix}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def check_replaceable_file(path: str | Path, overwrite: bool) -> None:
    """Fail unless `path` is absent, or is a file and `overwrite` is true.

    Raises:
        Img2NumError: The file cannot be written without losing something.
    """
    path = Path(path)
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise Img2NumError(f"{path}: already exists; pass --overwrite to replace it")


def check_replaceable(folder: str | Path, overwrite: bool) -> None:
    """Fail unless `folder` is absent, or is a folder and `overwrite` is true.

    Raises:
        Img2NumError: The folder cannot be written without losing something.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"{folder}: exists and is not a folder")
    if folder.exists() and not overwrite:
        raise Img2NumError(f"{folder}: already exists; pass --overwrite to replace it")


def records_csv(records: list[dict]) -> str:
    """Records (dicts with the same keys) as CSV text with a header row; None becomes empty."""
    if not records:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in records)
    return buffer.getvalue()


def progress_printer(stream: TextIO | None, quiet: bool = False) -> Callable[[str], None]:
    """A function that writes one progress line to `stream` (default: stderr), or nothing when
    `quiet`."""
    if quiet:
        return lambda text: None
    stream = stream or sys.stderr

    def say(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    return say
