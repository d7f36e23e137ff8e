"""Prediction maps of large GeoTIFF rasters: windows per second and peak memory as the raster grows.

Trains a tiny MLP run on 64x64 chips of a small scene once, then for each size S writes an S x S
uint8 GeoTIFF (`--bands` bands, deflate, 256x256 tiles, written tile row by tile row with
rasterio) and predicts its map (`predict_map`, `--tile` windows, stride = tile) in a fresh child
process, which reports its peak resident memory (`resource.getrusage(...).ru_maxrss`) before and
after the map. Memory should stay flat as the raster grows: the map reads one strip of windows
at a time.

    .venv/bin/python benchmarks/raster_speed.py [--sizes 5000,10000,20000] [--bands 3] [--tile 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

CRS = "EPSG:32652"


def write_scene(path: Path, size: int, bands: int, seed: int = 0) -> None:
    """An S x S uint8 raster of smooth gradients plus noise, written 256 rows at a time."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff", "height": size, "width": size, "count": bands, "dtype": "uint8", "crs": CRS,
        "transform": from_origin(500000, 4000000, 10, 10), "tiled": True, "blockxsize": 256, "blockysize": 256,
        "compress": "deflate", "BIGTIFF": "IF_SAFER",
    }
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as target:
        for top in range(0, size, 256):
            rows = min(256, size - top)
            pixels = ramp[None, None, :] + rng.normal(0, 20, (bands, rows, size)).astype(np.float32)
            target.write(np.clip(pixels, 0, 255).astype(np.uint8), window=Window(0, top, size, rows))


def train_run(folder: Path, bands: int, tile: int) -> Path:
    """A tiny MLP run on chips of a small scene (labels: the chip's mean brightness)."""
    from img2num.config import DataConfig, TrainConfig
    from img2num.training import train

    scene = folder / "small.tif"
    write_scene(scene, 512, bands)
    rng = np.random.default_rng(1)
    with open(folder / "points.csv", "w") as handle:
        handle.write("x,y,label\n")
        for row, column in rng.integers(tile, 512 - tile, (60, 2)):
            handle.write(f"{500000 + (column + 0.5) * 10},{4000000 - (row + 0.5) * 10},{column / 512}\n")
    warnings.filterwarnings("ignore", message=".*barely beats predicting the mean")  # speed, not accuracy
    train(
        folder / "points.csv", TrainConfig(model="mlp", epochs=1, seed=0), run_dir=folder / "run",
        data_options=DataConfig(raster=str(scene), tile=tile, skip_bad=True), quiet=True,
    )
    return folder / "run"


def peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child(run: str, scene: str, output: str, tile: int) -> None:
    """Predict one map and print a JSON line: windows, seconds, peak memory before and after."""
    from img2num.bundle import load_run
    from img2num.maps import predict_map

    loaded = load_run(run)
    import rasterio

    with rasterio.open(scene):
        pass
    before = peak_mb()
    started = time.perf_counter()
    result = predict_map(loaded, scene, output, tile=tile, quiet=True)
    seconds = time.perf_counter() - started
    windows = result.shape[0] * result.shape[1]
    print(json.dumps({"windows": windows, "predicted": result.predicted, "seconds": seconds, "before_mb": before, "peak_mb": peak_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000,20000", help="raster sides in pixels (default %(default)s)")
    parser.add_argument("--bands", type=int, default=3, help="bands of the rasters, 1-3 (default %(default)s)")
    parser.add_argument("--tile", type=int, default=64, help="window side (default %(default)s)")
    parser.add_argument("--child", nargs=3, metavar=("RUN", "SCENE", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.tile)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = train_run(folder, args.bands, args.tile)
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPU cores, {args.bands} bands, tile {args.tile}")
        print(f"{'size':>7} {'windows':>9} {'seconds':>8} {'windows/s':>10} {'MB before':>10} {'peak MB':>8}")
        for size in (int(text) for text in args.sizes.split(",")):
            scene = folder / f"scene{size}.tif"
            write_scene(scene, size, args.bands)
            command = [sys.executable, __file__, "--tile", str(args.tile), "--child", str(run), str(scene), str(folder / f"map{size}.tif")]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            record = json.loads(done.stdout.strip().splitlines()[-1])
            rate = record["windows"] / record["seconds"]
            print(f"{size:>7} {record['windows']:>9} {record['seconds']:>8.1f} {rate:>10.0f} {record['before_mb']:>10.0f} {record['peak_mb']:>8.0f}")
            scene.unlink()


if __name__ == "__main__":
    main()
