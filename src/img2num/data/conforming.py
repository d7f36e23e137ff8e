"""What images a data set takes (`ImageSpec`) and how one decoded image is brought to it:
bands, channels, size and pixel type (`conform`), or why it cannot be (`fit_problem`).

Bad images are reported by raising `BadImage` with the reason, as `img2num.data.images` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Resize modes stored in a run: "none" (images must already have the size), "scale" (only
# resizing that keeps the aspect ratio), "stretch" and "crop" (centre crop, then resize).
STORED_RESIZE_MODES = ("none", "scale", "stretch", "crop")
# Full brightness of each pixel type: a pixel keeps its share of it when its type changes.
FULL_SCALE = {"uint8": 255, "uint16": 65535, "float32": 1.0}
_DEPTH_NAMES = {"uint8": "8-bit", "uint16": "16-bit"}

class BadImage(Exception):
    """A file that is missing, not an image, unreadable, truncated or too large."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says: size after EXIF orientation, bands and pixel type."""

    height: int
    width: int
    bands: int
    dtype: str


@dataclass(frozen=True)
class ImageSpec:
    """How every image of a data set is brought to one array shape and type.

    Attributes:
        size: (height, width) of the result.
        channels: 1 (grayscale), 3 (colour) or the band count of multi-band images.
        dtype: "uint8", "uint16" or "float32".
        resize: One of `STORED_RESIZE_MODES`.
        bands: 1-based band numbers kept, in order (`--bands 4,3,2`), or None for every band;
            `channels` is then their count.
        source_bands: With `bands`, or for GeoTIFF chips, the band count of the images or
            rasters the bands were chosen from; None otherwise.
        pixel_size: Ground size (x, y) of a pixel of the GeoTIFF rasters in their CRS's units,
            or None for plain images.
    """

    size: tuple[int, int]
    channels: int
    dtype: str = "uint8"
    resize: str = "none"
    bands: tuple[int, ...] | None = None
    source_bands: int | None = None
    pixel_size: tuple[float, float] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.size, self.channels)


def conform(array: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Bring one decoded image (H, W, C) to `spec`: channels, then size, then pixel type.

    Raises:
        BadImage: The image cannot take the spec's channels or size without a choice the user
            did not make (a distorting resize, dropping bands).
    """
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadImage("holds NaN or infinite pixel values")
    if spec.bands is not None:
        if max(spec.bands) > array.shape[-1]:
            raise BadImage(f"has {array.shape[-1]} bands; --bands asks for band {max(spec.bands)}")
        array = array[..., [band - 1 for band in spec.bands]]
    array = _to_channels(array, spec.channels)
    array = _to_size(array, spec.size, spec.resize)
    return _to_dtype(array, spec.dtype)


def fit_problem(info: ImageInfo, spec: ImageSpec) -> str | None:
    """Why an image of header `info` cannot be brought to `spec` (bands or size), or None."""
    if spec.bands is not None:
        if spec.source_bands is not None and info.bands != spec.source_bands:
            chosen = ",".join(str(band) for band in spec.bands)
            return f"has {info.bands} bands; this data takes {spec.source_bands} (bands {chosen} of them)"
        if max(spec.bands) > info.bands:
            return f"has {info.bands} bands; --bands asks for band {max(spec.bands)}"
        return resize_problem(info.height, info.width, spec.size, spec.resize)
    if info.bands != spec.channels and (info.bands > 3 or spec.channels > 3):
        return f"has {info.bands} bands; this data takes {spec.channels}"
    return resize_problem(info.height, info.width, spec.size, spec.resize)


def resize_problem(height: int, width: int, size: tuple[int, int], resize: str) -> str | None:
    """Why an image of `height` x `width` cannot be brought to `size` in mode `resize`, or None."""
    if (height, width) == tuple(size) or resize in ("stretch", "crop"):
        return None
    if resize == "none":
        return f"image is {height}x{width}; expected {size[0]}x{size[1]}"
    if not _same_aspect(height, width, size):
        return (
            f"image is {height}x{width}; bringing it to {size[0]}x{size[1]} would distort it; "
            "choose --resize stretch or --resize crop"
        )
    return None


def _to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    have = array.shape[-1]
    if have == channels:
        return array
    if have == 1 and channels == 3:
        return np.repeat(array, 3, axis=-1)
    if have == 3 and channels == 1:
        # ITU-R 601-2 luma, as Pillow's convert("L").
        gray = array.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        if array.dtype.kind == "f":
            return gray[..., np.newaxis]
        return np.rint(gray)[..., np.newaxis].astype(array.dtype)
    raise BadImage(f"has {have} bands; the data set has {channels}")


def _to_size(array: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    height, width = array.shape[:2]
    problem = resize_problem(height, width, size, resize)
    if problem:
        raise BadImage(problem)
    if (height, width) == tuple(size):
        return array
    if resize == "crop":
        array = _centre_crop(array, size)
    return _resize(array, size)


def _centre_crop(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = array.shape[:2]
    target = size[1] / size[0]
    if width / height > target:
        keep = max(1, round(height * target))
        left = (width - keep) // 2
        return array[:, left : left + keep]
    keep = max(1, round(width / target))
    top = (height - keep) // 2
    return array[top : top + keep]


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    box = (size[1], size[0])
    if array.dtype == np.uint8 and array.shape[-1] in (1, 3):
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        out = np.asarray(image.resize(box, Image.Resampling.BILINEAR))
        return out[..., np.newaxis] if out.ndim == 2 else out
    bands = [
        np.asarray(Image.fromarray(array[..., band].astype(np.float32), "F").resize(box, Image.Resampling.BILINEAR))
        for band in range(array.shape[-1])
    ]
    out = np.stack(bands, axis=-1)
    if array.dtype.kind == "f":
        return out.astype(array.dtype)
    info = np.iinfo(array.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(array.dtype)


def _to_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """Bring pixels to `dtype`, each keeping its share of its own type's full brightness (255,
    65535, or 1 for floating point): 16-bit 40000 becomes 8-bit 156, never 40000 mod 256.

    Raises:
        BadImage: The pixels cannot be held by `dtype`: floating-point values outside 0 to 1
            (also for a floating-point `dtype`), or integers beyond the type of a run trained on
            arrays of another type.
    """
    if array.dtype == dtype:
        if array.dtype.kind == "f" and array.size and (array.min() < 0 or array.max() > 1):
            # As for 8- and 16-bit runs: a float run is trained on brightness 0-1 as well.
            raise BadImage(
                f"floating-point pixels range from {float(array.min()):g} to {float(array.max()):g}; "
                "only 0 to 1 (black to white) are read as floating-point pixels"
            )
        return array
    source, target = FULL_SCALE.get(array.dtype.name), FULL_SCALE.get(np.dtype(dtype).name)
    if source is None or target is None:  # arrays' own types (such as int64): values as they are
        source = target = 1
    if np.dtype(dtype).kind == "f":
        return array.astype(dtype) * np.dtype(dtype).type(target / source)
    if array.dtype == np.uint8 and dtype == "uint16":
        return array.astype(np.uint16) * np.uint16(257)
    scaled = array.astype(np.float64) * (target / source)
    info = np.iinfo(dtype)
    low, high = (float(scaled.min()), float(scaled.max())) if scaled.size else (0.0, 0.0)
    if low < info.min - 0.5 or high > info.max + 0.5:
        low, high, depth = low * source / target, high * source / target, _DEPTH_NAMES.get(dtype, dtype)
        if array.dtype.kind == "f":
            raise BadImage(
                f"floating-point pixels range from {low:g} to {high:g}; only 0 to 1 (black to white) "
                f"can become the {depth} pixels this run takes"
            )
        raise BadImage(f"pixel values range from {low:g} to {high:g}; the {depth} pixels this run takes hold {info.min} to {info.max}")
    return np.clip(np.rint(scaled), info.min, info.max).astype(dtype)


def _same_aspect(height: int, width: int, size: tuple[int, int]) -> bool:
    # Equal within one pixel of rounding either way.
    return abs(round(width * size[0] / size[1]) - height) <= 1 or abs(round(height * size[1] / size[0]) - width) <= 1
