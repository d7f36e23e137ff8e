"""Near-copies between the training images and the validation or test images: crops, tiles or
frames of the same scenes, which make held-out scores flatter a model on new scenes
(docs/groups.md, "When validation flatters")."""

from __future__ import annotations

import numpy as np
from PIL import Image

from img2num.data.arrays import Dataset
from img2num.data.files import ImageFiles
from img2num.metrics import near_copy_warning

# Every image is compared as a grey thumbnail of this side, its detail only (a blurred copy
# subtracted), so that haze, lighting and smooth gradients do not count as a likeness.
THUMB_SIDE = 24
_BLUR_TAPS = np.array([1, 4, 6, 4, 1], np.float32) / 16  # binomial, applied twice: sigma ~1.4 px
# The middle WINDOW x WINDOW of a held-out thumbnail, at each of SCALES, is looked for at every
# position of every training thumbnail (normalised correlation): a crop at another offset or
# zoom still matches.
WINDOW = 12
STRIDE = 2
SCALES = (0.85, 1.0, 1.18)
# An image has a near-copy when its best correlation with a training window beats its best with
# the same window turned upside down (a match no copy can explain) by this much: the null comes
# from the data, so simple shapes that match anything (dots, discs, strokes) do not count.
MARGIN = 0.15
# Held-out images measured per split (a share to a few percent), and training images searched.
SAMPLE = 100
MAX_TRAIN = 2000
# Image files are decoded this many bytes at a time.
_CHUNK_BYTES = 64 * 2**20
METHOD = (
    f"detail of {THUMB_SIDE}px grey thumbnails: a held-out image's middle {WINDOW}px window at zooms "
    f"{', '.join(f'{s:g}' for s in SCALES)} against every training window, near-copy when its best "
    f"correlation beats its best upside-down one by {MARGIN:g}; up to {SAMPLE} images per split"
)


def measure_near_copies(splits: dict, seed: int = 0) -> dict:
    """The share of validation (and test) images with a near-copy among the training images.

    Args:
        splits: "train", "val" and maybe "test", each a `Dataset` or `ImageFiles`.
        seed: Seed of the samples drawn from large splits.

    Returns:
        `{"val": share, "test": share, "method": text}` ("test" only when there is a test split);
        shares are in [0, 1], rounded to 3 decimals.
    """
    rng = np.random.default_rng(seed)
    (train,) = _thumbnails(splits["train"], _sample(len(splits["train"]), MAX_TRAIN, rng), [THUMB_SIDE])
    train_windows = _unit(_windows(_detail(train), WINDOW, STRIDE))
    record = {}
    for name in ("val", "test"):
        if name in splits and len(splits[name]):
            held_out = splits[name]
            chosen = _sample(len(held_out), SAMPLE, rng)
            record[name] = round(float(np.mean(_has_near_copy(held_out, chosen, train_windows))), 3)
    record["method"] = METHOD
    return record


def near_copy_record(splits: dict, options=None, seed: int = 0) -> dict | None:
    """What a run records about near-copies: `measure_near_copies` plus, where a share reaches
    `img2num.metrics.NEAR_COPY_SHARE`, its `warning` line. None where the user drew the splits
    (a split column) or named a group or time column: then the held-out images are theirs to choose.

    Args:
        splits: The job's splits (`resolve_splits`); its `validation` record says how they were
            drawn: measured where validation was drawn at random or given as files.
        options: The job's `DataConfig`, or None.
        seed: Seed of the samples drawn from large splits.
    """
    if getattr(options, "group_column", None) or getattr(options, "time_column", None):
        return None
    if (getattr(splits, "validation", None) or {}).get("drawn") not in (None, "random", "given"):
        return None
    record = measure_near_copies(splits, seed)
    warning = near_copy_warning(record)
    if warning is not None:
        record["warning"] = warning
    return record


def _has_near_copy(data: Dataset | ImageFiles, indices: np.ndarray, train_windows: np.ndarray) -> np.ndarray:
    best = np.full(len(indices), -1.0, np.float32)
    null = np.full(len(indices), -1.0, np.float32)
    sides = [max(WINDOW, int(round(THUMB_SIDE * scale))) for scale in SCALES]
    for side, thumbs in zip(sides, _thumbnails(data, indices, sides)):
        start = (side - WINDOW) // 2
        middle = _detail(thumbs)[:, start : start + WINDOW, start : start + WINDOW]
        windows = _unit(middle.reshape(len(indices), -1))
        # The window turned upside down is the same pixels reversed.
        scores = np.concatenate([windows, windows[:, ::-1]]) @ train_windows.T
        best = np.maximum(best, scores[: len(indices)].max(axis=1))
        null = np.maximum(null, scores[len(indices) :].max(axis=1))
    return best - null >= MARGIN


def _sample(count: int, most: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(count) if count <= most else np.sort(rng.choice(count, most, replace=False))


def _thumbnails(data: Dataset | ImageFiles, indices: np.ndarray, sides: list[int]) -> list[np.ndarray]:
    """Grey thumbnails (n, side, side) of the images at `indices`, one array per side; files are
    decoded once, a chunk at a time."""
    if isinstance(data, ImageFiles):
        step = max(1, _CHUNK_BYTES * len(data) // max(1, data.nbytes))
        chunks = (data.decode(indices[start : start + step]) for start in range(0, len(indices), step))
    else:
        chunks = (data.x[indices],)
    out: list[list[np.ndarray]] = [[] for _ in sides]
    for images in chunks:
        for image in images.astype(np.float32).mean(axis=3):
            grey = Image.fromarray(image, mode="F")
            for thumbs, side in zip(out, sides):
                thumbs.append(np.asarray(grey.resize((side, side), Image.BOX)))
    return [np.stack(thumbs) if thumbs else np.zeros((0, side, side), np.float32) for thumbs, side in zip(out, sides)]


def _detail(thumbs: np.ndarray) -> np.ndarray:
    """Thumbnails less their blurred selves (edges repeated at the border)."""
    blurred = thumbs
    for axis in (1, 2):
        for _ in range(2):
            padded = np.pad(blurred, [(0, 0)] + [(2, 2) if a == axis else (0, 0) for a in (1, 2)], mode="edge")
            length = blurred.shape[axis]
            blurred = sum(
                weight * np.take(padded, np.arange(shift, shift + length), axis=axis)
                for shift, weight in enumerate(_BLUR_TAPS)
            )
    return thumbs - blurred


def _windows(thumbs: np.ndarray, size: int, stride: int) -> np.ndarray:
    """The size x size windows of every thumbnail, `stride` pixels apart, one row each."""
    views = np.lib.stride_tricks.sliding_window_view(thumbs, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return views.reshape(-1, size * size)


def _unit(rows: np.ndarray) -> np.ndarray:
    """Rows less their mean, scaled to length 1 (flat rows stay 0: they match nothing)."""
    rows = np.array(rows, np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    rows /= np.where(norms > 1e-6, norms, np.inf)
    return rows
