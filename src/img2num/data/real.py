"""Image-regression tasks from images that packages ship: scikit-learn's handwritten digits,
counting objects on textured backgrounds, and haze of known strength on scikit-image's sample
photographs. Each is written as an image folder with a `labels.csv`, as a user's data would be.

scikit-learn and scikit-image (`pip install 'img2num[real]'`) are imported only when a task is
built; their data come inside the installed packages, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2num.data.arrays import Dataset
from img2num.data.files import write_image_folder
from img2num.errors import Img2NumError

REAL_TASK_NAMES = ("digits", "counting", "haze")
SPLIT_NAMES = ("train", "val", "test")
# Split sizes (train, val, test). Digits: the 1797 images of scikit-learn's set, as issue 11 used them.
DEFAULT_SIZES = {"digits": (1200, 250, 347), "counting": (1500, 300, 500), "haze": (1500, 300, 500)}
# Image side in pixels.
DEFAULT_SIDES = {"digits": 32, "counting": 48, "haze": 48}

# Counting: how many objects at most, their half-size in pixels, stray one-pixel dots at most.
MAX_OBJECTS = 10
OBJECT_RADII = (2, 4)
MAX_STRAY_DOTS = 8
# Haze: the scattering coefficient (the label) is drawn uniformly from 0 to this, per unit depth.
MAX_BETA = 3.0
# scikit-image's bundled photographs (they load without a download). Training and validation
# crops come from the first group, test crops from the second: new scenes.
HAZE_TRAIN_PHOTOS = (
    "astronaut", "chelsea", "rocket", "camera", "coins", "moon",
    "grass", "brick", "page", "text", "immunohistochemistry",
)
HAZE_TEST_PHOTOS = ("coffee", "clock", "gravel")
_PIXEL_NOISE = 0.02


def build_real_task(
    task: str, sizes: Sequence[int] | None = None, seed: int = 0, side: int | None = None
) -> dict[str, Dataset]:
    """Build the splits of a real-image task in memory (`build_real_task_with_scenes` without
    the scenes)."""
    return build_real_task_with_scenes(task, sizes, seed, side)[0]


def build_real_task_with_scenes(
    task: str, sizes: Sequence[int] | None = None, seed: int = 0, side: int | None = None
) -> tuple[dict[str, Dataset], dict[str, list[str]] | None]:
    """Build the splits of a real-image task in memory, with the scene of each haze image.

    Args:
        task: "digits", "counting" or "haze".
        sizes: (train, val, test) sample counts; default `DEFAULT_SIZES[task]`.
        seed: Seed of every random draw: the same seed gives the same images.
        side: Image height and width in pixels; default `DEFAULT_SIDES[task]`.

    Returns:
        8-bit data sets keyed "train", "val" and "test" (splits of size 0 are left out), and for
        haze the photograph each crop was cut from, by split (None for the other tasks): the
        group a user would keep apart (`--group-column scene`).

    Raises:
        Img2NumError: Unknown task, bad sizes, or scikit-learn / scikit-image missing.
    """
    if task not in REAL_TASK_NAMES:
        raise Img2NumError(f"unknown real-image task {task!r}; known: {', '.join(REAL_TASK_NAMES)}")
    sizes = tuple(int(s) for s in (DEFAULT_SIZES[task] if sizes is None else sizes))
    side = DEFAULT_SIDES[task] if side is None else int(side)
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) < 1:
        raise Img2NumError(f"sizes must be three counts (train, val, test), not all 0, got {sizes}")
    if side < 8:
        raise Img2NumError(f"image side must be at least 8 pixels, got {side}")
    scenes = None
    if task == "digits":
        splits = _digits(sizes, seed, side)
    else:
        streams = np.random.SeedSequence(seed).spawn(len(SPLIT_NAMES))
        drawn = {
            name: (_counting if task == "counting" else _haze)(size, np.random.default_rng(stream), side, name)
            for name, size, stream in zip(SPLIT_NAMES, sizes, streams)
            if size
        }
        if task == "haze":
            splits, scenes = {name: d[0] for name, d in drawn.items()}, {name: d[1] for name, d in drawn.items()}
        else:
            splits = drawn
    return {name: Dataset(data.x, data.y, f"{task}:{name}") for name, data in splits.items()}, scenes


def real_task_info(task: str, sizes: Sequence[int] | None = None, seed: int = 0, side: int | None = None) -> dict:
    """What `task.json` records for a real-image task: its name, label, options, and no Bayes
    reference (the best possible error is not known)."""
    labels = {
        "digits": "the digit shown, 0 to 9 (scikit-learn's handwritten digits)",
        "counting": f"number of discs and squares, 0 to {MAX_OBJECTS}",
        "haze": f"haze scattering coefficient beta, 0 to {MAX_BETA:g} per unit depth",
    }
    return {
        "task": task,
        "label": labels[task],
        "options": {
            "sizes": list(DEFAULT_SIZES[task] if sizes is None else sizes),
            "seed": seed,
            "side": DEFAULT_SIDES[task] if side is None else side,
        },
        "reference_mse": None,
        "reference": "not known for a real-image task",
    }


def write_real_task(
    folder: str | Path,
    task: str,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
    side: int | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Build a real-image task and write it as PNG files, `labels.csv` and `task.json`.

    The folder is what `img2num train FOLDER` reads (see `img2num.data.write_image_folder`).

    Args:
        folder: Output folder, created if needed.
        task: "digits", "counting" or "haze".
        sizes: (train, val, test) sample counts; default `DEFAULT_SIZES[task]`.
        seed: Seed of every random draw.
        side: Image height and width in pixels; default `DEFAULT_SIDES[task]`.
        overwrite: Replace existing images and labels instead of failing.

    Returns:
        The paths written: "images", "labels" and "task".

    Raises:
        Img2NumError: As `build_real_task`, or the outputs exist and `overwrite` is false.
    """
    splits, scenes = build_real_task_with_scenes(task, sizes, seed, side)
    columns = None if scenes is None else {"scene": scenes}
    return write_image_folder(folder, splits, overwrite, task=real_task_info(task, sizes, seed, side), columns=columns)


def _digits(sizes: tuple[int, int, int], seed: int, side: int) -> dict[str, Dataset]:
    """scikit-learn's 1797 8x8 digits (pixel values 0..16), shuffled, grey, resized to `side`."""
    from PIL import Image

    digits = _require("sklearn.datasets", "scikit-learn").load_digits()
    if sum(sizes) > len(digits.target):
        raise Img2NumError(f"the digits set has {len(digits.target)} images; sizes {sizes} ask for {sum(sizes)}")
    order = np.random.default_rng(seed).permutation(len(digits.target))
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    splits, start = {}, 0
    for name, size in zip(SPLIT_NAMES, sizes):
        chosen = order[start : start + size]
        start += size
        if size:
            x = np.stack([np.asarray(Image.fromarray(pixels[i]).resize((side, side), Image.BILINEAR)) for i in chosen])
            splits[name] = Dataset(x[..., None], digits.target[chosen].astype(np.float32))
    return splits


def _counting(n: int, rng: np.random.Generator, side: int, split: str) -> Dataset:
    """Discs and squares of varied size and colour, never touching, on a textured background
    with stray one-pixel dots; the label is the number of discs and squares."""
    counts = rng.integers(0, MAX_OBJECTS + 1, size=n)
    rows, cols = np.mgrid[0:side, 0:side]
    x = np.empty((n, side, side, 3), dtype=np.uint8)
    for index, count in enumerate(counts):
        base = rng.uniform(0.15, 0.85, size=3)
        image = base + 0.12 * _smooth_field(rng, side, 6, 3) + 0.04 * _smooth_field(rng, side, side // 3, 3)
        taken = np.zeros((side, side), dtype=bool)
        for _ in range(count):
            radius = int(rng.integers(OBJECT_RADII[0], OBJECT_RADII[1] + 1))
            mask = _place(rng, taken, rows, cols, radius)
            colour = _distinct_colour(rng, base)
            image[mask] = colour * rng.uniform(0.85, 1.0)
        for _ in range(int(rng.integers(0, MAX_STRAY_DOTS + 1))):
            image[rng.integers(0, side), rng.integers(0, side)] = rng.uniform(0, 1, size=3)
        image += _PIXEL_NOISE * rng.standard_normal(image.shape)
        x[index] = _to_uint8(image)
    return Dataset(x, counts.astype(np.float32))


def _place(rng: np.random.Generator, taken: np.ndarray, rows, cols, radius: int) -> np.ndarray:
    """The pixels of a disc or square of `radius` at a free spot one pixel clear of `taken`
    (marked taken); smaller objects are tried when no spot is found."""
    side = taken.shape[0]
    for attempt in range(400):
        r = max(1, radius - attempt // 100)
        cy, cx = rng.integers(r, side - r, size=2)
        if rng.random() < 0.5:
            mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= r * r + r
        else:
            mask = (abs(rows - cy) <= r) & (abs(cols - cx) <= r)
        halo = (abs(rows - cy) <= r + 1) & (abs(cols - cx) <= r + 1)
        if not (halo & taken).any():
            taken |= mask
            return mask
    raise Img2NumError(f"no room for another object on a {side}x{side} image; use a larger side")


def _distinct_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A colour that differs from the background's `base` by at least 0.35 in some channel."""
    while True:
        colour = rng.uniform(0, 1, size=3)
        if np.abs(colour - base).max() >= 0.35:
            return colour


def _haze(n: int, rng: np.random.Generator, side: int, split: str) -> tuple[Dataset, list[str]]:
    """Crops of sample photographs under haze: I = J t + A (1 - t), t = exp(-beta d); and the
    photograph of each crop.

    J is the clear crop, d a depth proxy in [0.1, 1] (farther towards the top of the crop,
    plus a smooth random field), A the airlight (a light grey with a slight tint). The label is
    beta. Test crops come from `HAZE_TEST_PHOTOS`, the other splits from `HAZE_TRAIN_PHOTOS`.
    """
    from PIL import Image

    names = HAZE_TEST_PHOTOS if split == "test" else HAZE_TRAIN_PHOTOS
    photos = [_photo(name) for name in names]
    betas = rng.uniform(0, MAX_BETA, size=n)
    ramp = np.linspace(1.0, 0.0, side)[:, None]
    x = np.empty((n, side, side, 3), dtype=np.uint8)
    scenes = []
    for index, beta in enumerate(betas):
        chosen = int(rng.integers(len(photos)))
        photo = photos[chosen]
        scenes.append(names[chosen])
        height, width = photo.shape[:2]
        box = int(rng.uniform(0.25, 0.6) * min(height, width))
        top, left = int(rng.integers(0, height - box + 1)), int(rng.integers(0, width - box + 1))
        crop = Image.fromarray(photo[top : top + box, left : left + box]).resize((side, side), Image.BILINEAR)
        clear = np.asarray(crop, dtype=np.float64) / 255.0
        depth = 0.3 + rng.uniform(0.2, 0.6) * ramp + 0.25 * _smooth_field(rng, side, 4, 1)[..., 0]
        transmission = np.exp(-beta * np.clip(depth, 0.1, 1.0))[..., None]
        airlight = rng.uniform(0.7, 1.0) * (1 + rng.uniform(-0.05, 0.05, size=3))
        image = clear * transmission + airlight * (1 - transmission)
        x[index] = _to_uint8(image + _PIXEL_NOISE * rng.standard_normal(image.shape))
    return Dataset(x, betas.astype(np.float32)), scenes


def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as 8-bit RGB (grey ones repeated over three channels)."""
    data = _require("skimage.data", "scikit-image")
    image = np.asarray(getattr(data, name)())
    if image.dtype != np.uint8:
        image = np.round(255 * (image - image.min()) / max(float(image.max() - image.min()), 1e-12)).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _smooth_field(rng: np.random.Generator, side: int, cells: int, channels: int) -> np.ndarray:
    """A random field that varies smoothly over a `side` x `side` image: standard normal values
    on a `cells` x `cells` grid, interpolated bilinearly. Shape (side, side, channels)."""
    coarse = rng.standard_normal((cells, cells, channels))
    weights = _interpolation_matrix(side, cells)
    rows = np.tensordot(weights, coarse, axes=(1, 0))  # (side, cells, channels)
    return np.tensordot(rows, weights, axes=(1, 1)).transpose(0, 2, 1)


def _interpolation_matrix(side: int, cells: int) -> np.ndarray:
    position = np.linspace(0, cells - 1, side)
    lower = np.minimum(np.floor(position).astype(int), cells - 2) if cells > 1 else np.zeros(side, int)
    fraction = position - lower
    weights = np.zeros((side, cells))
    weights[np.arange(side), lower] = 1 - fraction if cells > 1 else 1.0
    if cells > 1:
        weights[np.arange(side), lower + 1] = fraction
    return weights


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Img2NumError(
            f"the real-image tasks need {package}: pip install 'img2num[real]' (or pip install {package})"
        ) from None

