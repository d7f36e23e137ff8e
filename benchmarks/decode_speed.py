"""Images decoded per second from a folder of 64x64 RGB PNG files.

Writes N random 64x64 RGB PNGs into a temporary folder, then decodes them all, `--repeats`
times each, with:
  - a plain single-process Pillow loop (open, convert to RGB, to a NumPy array);
  - img2num's decoder in this process (`decode_files` with one worker), which also applies EXIF
    orientation and checks size, channels and pixel type;
  - img2num's decoder on worker processes (`decode_files` with every core), as training and
    prediction use it for data sets of more than `PARALLEL_MIN_FILES` files;
  - the streaming batches training reads when data does not fit the in-memory limit.
Prints the median rate of each.

    .venv/bin/python benchmarks/decode_speed.py [--images 2000] [--repeats 5] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from img2num.preprocessing import Preprocessing
from img2num.data import ImageFiles
from img2num.data.decoding import decode_files
from img2num.data.conforming import ImageSpec


def write_pngs(folder: Path, count: int, rng: np.random.Generator) -> list[str]:
    paths = []
    for index in range(count):
        # Smooth gradients plus noise: compresses like a photo rather than like pure noise.
        base = np.linspace(0, 200, 64, dtype=np.float32)[None, :, None] + rng.normal(0, 20, (64, 64, 3))
        pixels = np.clip(base, 0, 255).astype(np.uint8)
        paths.append(str(folder / f"{index:05d}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


def pillow_loop(paths: list[str]) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB")))
    return np.stack(out)


def median_rate(function, count: int, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return count / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    spec = ImageSpec((64, 64), 3)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_pngs(Path(tmp), args.images, np.random.default_rng(0))
        pillow_loop(paths)  # warm the file cache so every method reads from memory
        reference = pillow_loop(paths)
        decoded = np.stack([a for a, _, _ in decode_files(paths, spec, workers=args.workers)])
        assert np.array_equal(decoded, reference), "img2num must decode exactly what Pillow does"

        files = ImageFiles(tuple(paths), spec, np.zeros(len(paths), np.float32), workers=args.workers)
        preprocessing = Preprocessing((64, 64, 3), 1 / 255, input_dtype="uint8", input_kind="images")

        def stream_epoch():
            from img2num.data.stream import ImageBatches

            batches = ImageBatches(files, preprocessing, batch_size=32, shuffle=True, seed=0)
            for index in range(len(batches)):
                batches[index]
            batches.on_epoch_end()

        rates = {
            "Pillow loop, 1 process": median_rate(lambda: pillow_loop(paths), len(paths), args.repeats),
            "img2num decode_files, 1 process": median_rate(
                lambda: decode_files(paths, spec, workers=1), len(paths), args.repeats
            ),
            f"img2num decode_files, {args.workers} processes": median_rate(
                lambda: decode_files(paths, spec, workers=args.workers), len(paths), args.repeats
            ),
            f"img2num streaming batches of 32 (+ scaling), {args.workers} processes": median_rate(
                stream_epoch, len(paths), args.repeats
            ),
        }
    print(f"{args.images} PNG files 64x64 RGB, {os.cpu_count()} CPU cores, median of {args.repeats}")
    baseline = rates["Pillow loop, 1 process"]
    for name, rate in rates.items():
        print(f"{name:<62} {rate:>9,.0f} images/s  ({rate / baseline:.2f}x)")


if __name__ == "__main__":
    main()
