"""Prediction throughput of the Keras path against ONNX Runtime on the run's exported graph.

For `cnn_gap` on 64x64 colour images and a head on the offline EfficientNet-Lite0 backbone
(`backbone:efficientnet_lite0`, features at 128 px): a run is trained (1 epoch; its accuracy does
not matter here), then the same images are predicted by `Run.predict` (Keras, JAX's compiled
call) and by the `onnx` engine (`img2num.engines`), side by side in one process: images per
second, the median of `--repeats` passes after one that compiles, and the largest relative
difference between the two. Then the whole `img2num predict RUN FOLDER` command, timed once per
engine (start-up, decoding and writing included). The load average is printed beside the figures:
on a shared machine they move with it.

    .venv/bin/python benchmarks/onnx_speed.py              # 512 images, 5 repeats
    .venv/bin/python benchmarks/onnx_speed.py --quick      # 32 images, 1 repeat: checks it runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, size: int) -> Path:
    """`count` random colour PNGs and a label CSV with a split column."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    rows = ["file,label,split"]
    for index in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img" / f"{index:04d}.png")
        split = "train" if index % 5 < 3 else "val" if index % 5 == 3 else "test"
        rows.append(f"img/{index:04d}.png,{pixels[..., 0].mean() / 10:.4f},{split}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def throughput(predict, x: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Images per second of `predict(x)` (median of `repeats` after a compiling pass) and its output."""
    output = predict(x)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - began)
    return len(x) / statistics.median(times), output


def command_seconds(run: Path, folder: Path, engine: str) -> float:
    """Seconds of the whole `img2num predict RUN FOLDER --engine ENGINE` command."""
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "img2num", "predict", str(run), str(folder), "--engine", engine],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="images predicted per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the median is reported")
    parser.add_argument("--models", default="cnn_gap,backbone:efficientnet_lite0", help="comma-separated models")
    parser.add_argument("--quick", action="store_true", help="32 images, 1 repeat: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 32, 1

    from PIL import Image

    from img2num.bundle import load_run
    from img2num.config import DataConfig, TrainConfig
    from img2num.engines import engine_run
    from img2num.onnx_runtime import ort_threads
    from img2num.training import train

    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"ONNX Runtime threads {ort_threads()}; {args.images} images, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_images(tmp / "photos", max(args.images, 40), 64)
        files = sorted((tmp / "photos" / "img").glob("*.png"))[: args.images]
        x = np.stack([np.asarray(Image.open(path)) for path in files])
        print(f"{'model':36s} {'keras img/s':>12s} {'onnx img/s':>11s} {'ratio':>6s} {'max rel diff':>13s} {'cmd keras s':>12s} {'cmd onnx s':>11s}")
        for model in args.models.split(","):
            run_dir = tmp / model.replace(":", "_")
            train(labels, TrainConfig(model=model, epochs=1, seed=0), data_options=DataConfig(), run_dir=run_dir, quiet=True, pictures=False)
            keras_run = load_run(run_dir)
            onnx_run = engine_run(run_dir, "onnx")
            keras_speed, keras_out = throughput(keras_run.predict, x, args.repeats)
            onnx_speed, onnx_out = throughput(onnx_run.predict, x, args.repeats)
            diff = float(np.max(np.abs(onnx_out - keras_out) / np.maximum(np.abs(keras_out), 1e-12)))
            folder = tmp / "photos" / "img"
            seconds = {engine: command_seconds(run_dir, folder, engine) for engine in ("keras", "onnx")}
            print(f"{model:36s} {keras_speed:12.0f} {onnx_speed:11.0f} {onnx_speed / keras_speed:6.2f} {diff:13.1e} "
                  f"{seconds['keras']:12.2f} {seconds['onnx']:11.2f}")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
