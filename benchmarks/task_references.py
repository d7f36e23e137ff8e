"""Print each synthetic task's Bayes reference beside a Monte Carlo estimate and the two baselines.

For the points task (16x16) and the dust task (64x64, 2-pixel cells): the exact best possible MSE,
the MSE of the Bayes rule on fresh samples (with its standard error), the MSE of the training-mean
and ridge baselines fitted on the tutorial's budget (1500 training, 300 validation samples), and
the generator's speed. Run: .venv/bin/python benchmarks/task_references.py [TEST_SAMPLES]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from img2num.baselines import MeanBaseline, RidgeBaseline
from img2num.config import DustConfig, PointsConfig
from img2num.data import generate_dust, generate_points, reference_predictions, task_info


def main(test_samples: int = 10_000) -> None:
    tasks = {
        "points 16x16": (PointsConfig(), lambda n, rng: generate_points(n, rng)),
        "dust 64x64": (DustConfig(), lambda n, rng: generate_dust(n, rng)),
    }
    print("| task | Bayes reference | Bayes rule on fresh samples | ridge baseline | mean baseline | generator samples/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (config, draw) in tasks.items():
        info = task_info(config)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        test = draw(test_samples, rng)
        speed = test_samples / (time.perf_counter() - started)
        train, val = draw(1500, rng), draw(300, rng)
        squared = (reference_predictions(info, test.x) - test.y) ** 2
        error = squared.std() / np.sqrt(len(squared))
        ridge = RidgeBaseline().fit(train.x, train.y, val.x, val.y)
        ridge_mse = np.mean((ridge.predict(test.x) - test.y) ** 2)
        mean_mse = np.mean((MeanBaseline().fit(train.x, train.y).predict(test.x) - test.y) ** 2)
        print(
            f"| {name} | {info['reference_mse']:.3f} | {squared.mean():.3f} ± {error:.3f} | {ridge_mse:.2f} "
            f"| {mean_mse:.1f} | {speed:,.0f} |"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
