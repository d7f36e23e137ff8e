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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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


# Every folder img2num writes holds this small file naming its kind ("run", ...): `--overwrite`
# replaces only a folder that holds it, so it never deletes the user's data or anything else.
MARKER_FILE = ".img2num"


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder img2num writes, and how to recognise one.

    Attributes:
        name: The word in the folder's marker file, such as "run".
        description: What the folder is, for messages ("run folder").
        legacy: Files that together mark a folder of this kind written before the marker
            existed (`config.json` and `model.keras` for a run), so those can still be replaced.
        legacy_check: Instead of `legacy`, a function that recognises such an older folder.
    """

    name: str
    description: str
    legacy: tuple[str, ...] = ()
    legacy_check: Callable[[Path], bool] | None = None

    def holds(self, folder: Path) -> bool:
        """Whether `folder` is a folder of this kind: by its marker, or by the files of an older one."""
        marker = folder / MARKER_FILE
        if marker.is_file():
            try:
                return marker.read_text(encoding="utf-8").strip() == self.name
            except (OSError, UnicodeDecodeError):
                return False
        if self.legacy_check is not None:
            return self.legacy_check(folder)
        return bool(self.legacy) and all((folder / name).is_file() for name in self.legacy)


@contextlib.contextmanager
def atomic_folder(folder: str | Path, overwrite: bool = False, kind: FolderKind | None = None) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place when the block succeeds.

    An interrupted or failed block leaves nothing at `folder`, so a half-made run or results
    folder is never mistaken for a finished one. An existing folder is replaced only when
    `overwrite` is true, and only after the new one is complete; with `kind`, only a folder of
    that kind (`check_replaceable`), and the new folder gets the kind's marker file.

    Raises:
        Img2NumError: As `check_replaceable`.
    """
    folder = Path(folder)
    check_replaceable(folder, overwrite, kind)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(folder.parent, f".{folder.name}.", ".partial", os.mkdir)
    try:
        with interrupts.temporary(tmp):
            if kind is not None:
                (tmp / MARKER_FILE).write_text(kind.name + "\n", encoding="utf-8")
            yield tmp
            check_replaceable(folder, overwrite, kind)
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


def check_replaceable_file(path: str | Path, overwrite: bool, reads: Iterable[str | Path] = ()) -> None:
    """Fail unless `path` is absent, or is a file and `overwrite` is true, and is none of the
    files the job reads.

    Args:
        path: The file to write.
        overwrite: Whether an existing file may be replaced.
        reads: Files and folders the job reads (its data); `path` must not be one of them.

    Raises:
        Img2NumError: The file cannot be written without losing something.
    """
    path = Path(path)
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise Img2NumError(f"{path}: already exists; pass --overwrite to replace it")
    if path.exists():
        target = _resolved(path)
        if any(_resolved(read) == target for read in reads):
            raise Img2NumError(f"{path}: is data this command reads; --overwrite never replaces its input, choose another output file")
    _check_writable(path)


def check_replaceable(
    folder: str | Path, overwrite: bool, kind: FolderKind | None = None, reads: Iterable[str | Path] = ()
) -> None:
    """Fail unless `folder` can be written and nothing but an earlier output would be lost.

    An existing folder is replaced only with `overwrite`, only when it is a folder of `kind`
    (by its marker file, or an older one by its files), never when it is or holds the working
    folder, and never when it holds any of `reads` (the job's data) or is one of them. Where
    `folder` would be created, the nearest existing folder above it must take new folders.

    Args:
        folder: The folder to write.
        overwrite: Whether an existing folder may be replaced.
        kind: The kind of folder written; None accepts any existing folder (for callers that
            check the kind themselves).
        reads: Files and folders the job reads.

    Raises:
        Img2NumError: The folder cannot be written without losing something.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"{folder}: exists and is not a folder")
    if folder.exists():
        if not overwrite:
            raise Img2NumError(f"{folder}: already exists; pass --overwrite to replace it")
        target = _resolved(folder)
        if _inside(_resolved(Path.cwd()), target):
            raise Img2NumError(f"{folder}: is the working folder or holds it; --overwrite never replaces it, choose another folder")
        held = next((read for read in reads if _inside(_resolved(read), target)), None)
        if held is not None:
            raise Img2NumError(f"{folder}: holds data this command reads ({held}); --overwrite never replaces it, choose another folder")
        if kind is not None and not kind.holds(folder):
            raise Img2NumError(
                f"{folder}: is not an img2num {kind.description} (it has no {MARKER_FILE} file saying so); "
                "--overwrite replaces only what img2num wrote: remove it yourself or choose another folder"
            )
    _check_writable(folder)


def data_reads(*data) -> list[Path]:
    """The paths a job's data arguments read, for `check_replaceable`'s `reads`.

    Args:
        *data: Paths (str or `Path`), or data objects: their `source` when it is a path on disk,
            and the folders of their image files (`paths`); None and arrays give nothing.

    Returns:
        Files and folders, each once.
    """
    found: dict[str, Path] = {}
    for item in data:
        if isinstance(item, (str, Path)):
            found.setdefault(str(item), Path(item))
            continue
        source = getattr(item, "source", None)
        if isinstance(source, str) and os.path.exists(source):
            found.setdefault(source, Path(source))
        # An image is inside a folder exactly when its own folder is: one path per folder.
        for folder in {os.path.dirname(os.path.abspath(path)) for path in getattr(item, "paths", None) or ()}:
            found.setdefault(folder, Path(folder))
    return list(found.values())


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.normcase(os.path.abspath(path))))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_writable(path: Path) -> None:
    """Fail when `path` could not be created: the nearest existing folder above it is a file or
    does not take new entries (read-only), found before the job does its work."""
    above = Path(os.path.abspath(path)).parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise Img2NumError(f"{path}: cannot be written; {above} is a file, not a folder")
    try:
        probe = _create_unique(above, ".img2num-probe.", ".tmp", os.mkdir)
    except OSError as error:
        raise Img2NumError(f"{path}: cannot be written; {above}: {error.strerror or error}") from None
    os.rmdir(probe)


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
