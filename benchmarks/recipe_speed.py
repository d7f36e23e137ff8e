"""Speed of the recipe's parts on this machine: training seconds per epoch and data generation.

Prints, for the tutorial's two models, seconds per epoch of `img2num.train` (1500 training and
300 validation samples, batch 32, validation every epoch; median over the epochs after the
first, which compiles), and samples per second of the vectorised points generator next to a
per-sample Python loop that draws the same distribution, the way the tutorial did.

    .venv/bin/python benchmarks/recipe_speed.py [--epochs 20] [--samples 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from img2num.config import PointsConfig, TrainConfig
from img2num.data import generate_points, generate_points_splits
from img2num.training import train


def loop_points(n_samples: int, rng: np.random.Generator, height: int = 16, width: int = 16):
    """The per-sample loop: one image at a time, one point at a time."""
    x = np.zeros((n_samples, height, width, 1), np.uint8)
    y = np.zeros(n_samples, np.float32)
    for index in range(n_samples):
        n = int(rng.integers(0, height * width))
        for row, col in rng.random((n, 2)):
            x[index, int(row * height), int(col * width), 0] = 1
        y[index] = n
    return x, y


def seconds_per_epoch(model: str, epochs: int, splits) -> tuple[float, float]:
    run = train(splits["train"], TrainConfig(model=model, epochs=epochs), val=splits["val"], quiet=True)
    seconds = [row["seconds"] for row in run.history]
    return seconds[0], statistics.median(seconds[1:])


def best_rate(make, n_samples: int, repeats: int) -> float:
    times = []
    for repeat in range(repeats):
        started = time.perf_counter()
        make(n_samples, np.random.default_rng(repeat))
        times.append(time.perf_counter() - started)
    return n_samples / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples for the vectorised generator")
    parser.add_argument("--loop-samples", type=int, default=20_000, help="samples for the per-sample loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    splits = generate_points_splits(PointsConfig(train=1500, val=300, test=0))
    print(f"\ntraining, {args.epochs} epochs, 1500 train / 300 val samples, batch 32")
    print(f"{'model':<6} {'first epoch s':>14} {'median s/epoch':>15} {'1000 epochs s':>14}")
    for model in ("mlp", "cnn"):
        first, median = seconds_per_epoch(model, args.epochs, splits)
        print(f"{model:<6} {first:>14.3f} {median:>15.4f} {1000 * median:>14.0f}")

    print(f"\npoints generator, 16x16, median of {args.repeats} runs")
    vectorised = best_rate(generate_points, args.samples, args.repeats)
    loop = best_rate(loop_points, args.loop_samples, args.repeats)
    print(f"{'vectorised':<11} {vectorised:>12,.0f} samples/s  ({args.samples:,} samples in {args.samples / vectorised:.2f} s)")
    print(f"{'python loop':<11} {loop:>12,.0f} samples/s  ({args.loop_samples:,} samples)")
    print(f"speed-up    {vectorised / loop:>12.0f}x")


if __name__ == "__main__":
    main()
