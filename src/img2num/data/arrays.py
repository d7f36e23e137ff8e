"""Labelled image arrays in memory (`Dataset`) and on disk (`.npz` files with `x` and `y`)."""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.errors import Img2NumError
from img2num.io import atomic_path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    """Images and, when known, one number per image.

    Attributes:
        x: Images, shape (N, H, W, C).
        y: Labels as float32, shape (N,), or None for unlabelled images.
        source: Where the data came from, for messages and reports.
        paths: The image file of each sample when read from image files, else None.
        spec: How those files were decoded (an `ImageSpec`: size, channels, pixel type,
            resize mode), else None.
        groups: Each sample's group (the text of a label CSV's group column), else None; shares
            held out of the data keep whole groups apart (`img2num.data.draw_held_out`).
        times: Each sample's time (the text of a label CSV's time column), else None; shares
            held out of the data are the latest in time.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    source: str = "<memory>"
    paths: tuple[str, ...] | None = None
    spec: object | None = None
    groups: tuple[str, ...] | None = None
    times: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = _checked_arrays(self.x, self.y, self.source)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if self.paths is not None:
            object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
            if len(self.paths) != len(x):
                raise ValueError(f"{len(self.paths)} paths for {len(x)} images")
        for name in ("groups", "times"):
            values = getattr(self, name)
            if values is not None:
                object.__setattr__(self, name, tuple(str(v) for v in values))
                if len(values) != len(x):
                    raise ValueError(f"{len(values)} {name} for {len(x)} images")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        return tuple(int(d) for d in self.x.shape[1:])

    def take(self, indices: np.ndarray, source: str | None = None) -> Dataset:
        """The samples at `indices`, as a new data set."""
        y = None if self.y is None else self.y[indices]
        picked = np.asarray(indices, dtype=int)
        paths, groups, times = (None if v is None else tuple(v[i] for i in picked) for v in (self.paths, self.groups, self.times))
        return Dataset(self.x[indices], y, source or self.source, paths, self.spec, groups, times)

    def with_labels(self, y: np.ndarray) -> Dataset:
        """The same images with other labels (such as standardized targets)."""
        return dataclasses.replace(self, y=y)

    def to_dataset(self) -> Dataset:
        """The data set itself: it is in memory already (see `ImageFiles.to_dataset`)."""
        return self


def shape_text(shape) -> str:
    """A shape as people write it, such as `16x16x1`."""
    return "x".join(str(int(d)) for d in shape)


def save_npz(path: str | Path, data: Dataset) -> Path:
    """Write a data set as an `.npz` file with `x` (and `y` when labelled), atomically.

    Args:
        path: Destination file.
        data: The data set to write.

    Returns:
        The path written.
    """
    path = Path(path)
    arrays = {"x": data.x} if data.y is None else {"x": data.x, "y": data.y}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_dataset(path: str | Path, require_labels: bool = False) -> Dataset:
    """Read and validate an `.npz` data set.

    Args:
        path: An `.npz` file holding `x` of shape (N, H, W) or (N, H, W, C) and, optionally, `y`
            with one finite number per image.
        require_labels: Fail when the file has no `y`.

    Returns:
        The data set, with a channel axis and float32 labels.

    Raises:
        Img2NumError: The file is missing, unreadable, or its arrays have the wrong names,
            shapes, types or values.
    """
    path = Path(path)
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected an .npz file")
    if not path.exists():
        raise Img2NumError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "x" not in names:
                raise Img2NumError(
                    f"{path}: has no array 'x' (found: {', '.join(names) or 'nothing'}); "
                    "expected images in 'x' and labels in 'y'"
                )
            x = archive["x"]
            y = archive["y"] if "y" in names else None
    except Img2NumError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise Img2NumError(f"{path}: not a readable .npz file ({_reason(error)})") from None
    if require_labels and y is None:
        raise Img2NumError(f"{path}: has no array 'y'; labels are needed here")
    return Dataset(x, y, str(path))


def load_split_folder(folder: str | Path) -> dict[str, Dataset]:
    """Read the `train.npz`, `val.npz` and `test.npz` that `img2num generate` writes.

    Args:
        folder: A folder holding at least `train.npz`.

    Returns:
        The labelled data set of each split file present, keyed by split name.

    Raises:
        Img2NumError: The folder or its `train.npz` is missing, or a file is invalid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Img2NumError(f"{folder}: no such folder")
    if not (folder / "train.npz").exists():
        raise Img2NumError(f"{folder}: holds no train.npz; expected the output of `img2num generate`")
    return {
        split: load_dataset(folder / f"{split}.npz", require_labels=True)
        for split in SPLITS
        if (folder / f"{split}.npz").exists()
    }


def _checked_arrays(x, y, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise Img2NumError(f"{source}: images 'x' must be numeric, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise Img2NumError(
            f"{source}: images 'x' must have shape (N, H, W) or (N, H, W, C), got {x.shape}"
        )
    if len(x) == 0:
        raise Img2NumError(f"{source}: holds no images")
    if min(x.shape[1:]) == 0:
        raise Img2NumError(f"{source}: images 'x' have an empty dimension, shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise Img2NumError(f"{source}: images 'x' hold NaN or infinite pixel values")
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise Img2NumError(f"{source}: labels 'y' must have shape (N,) or (N, 1), got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == bool):
        raise Img2NumError(f"{source}: labels 'y' must be numbers, got dtype {y.dtype}")
    if len(y) != len(x):
        raise Img2NumError(f"{source}: has {len(y)} labels for {len(x)} images")
    with np.errstate(over="ignore"):  # a label beyond float32 is reported below, not warned about
        y32 = y.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(y32))
    if bad.size:
        raise Img2NumError(
            f"{source}: label at index {bad[0]} is {y[bad[0]]}; labels must be finite numbers that fit "
            f"a 32-bit float ({bad.size} such label{'s' if bad.size > 1 else ''})"
        )
    return x, y32


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def as_dataset(data: Dataset | str | Path, require_labels: bool = False) -> Dataset:
    """Accept a data set or the path of an `.npz` file holding one."""
    if isinstance(data, Dataset):
        if require_labels and data.y is None:
            raise Img2NumError(f"{data.source}: has no labels; labels are needed here")
        return data
    return load_dataset(data, require_labels=require_labels)
