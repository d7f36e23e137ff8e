"""Near-copy benchmark: the share of validation and test images that `img2num.data.near_copies`
finds a near-copy of in training, and its seconds, on the real-image tasks and the synthetic
points task, each at the real-image benchmark's sizes.

Haze crops its training and validation images from the same photos (test crops from others): its
validation share must reach the warning's threshold and its test share must not. Digits, counting
and points are independent images: every share must stay below it.

    .venv/bin/python benchmarks/near_copies.py                    # every task, seeds 0
    .venv/bin/python benchmarks/near_copies.py --seeds 0 1 2 --tasks haze digits

Needs scikit-learn and scikit-image (pip install -e '.[real]'); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import time

from img2num.config import PointsConfig
from img2num.data import generate_points_splits, measure_near_copies
from img2num.data.real import DEFAULT_SIZES, REAL_TASK_NAMES, build_real_task
from img2num.metrics import NEAR_COPY_SHARE

TASKS = (*REAL_TASK_NAMES, "points")


def build(task: str, seed: int) -> dict:
    """The task's splits in memory, at the real-image benchmark's sizes."""
    if task == "points":
        return generate_points_splits(PointsConfig(train=1500, val=300, test=1000, seed=seed))
    return build_real_task(task, DEFAULT_SIZES[task], seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="data seeds (each builds the task anew)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; warning at a share of {NEAR_COPY_SHARE:.0%}")
    print("| task | seed | train / val / test | val share | test share | seconds |")
    print("|---|---:|---|---:|---:|---:|")
    for task in args.tasks:
        for seed in args.seeds:
            splits = build(task, seed)
            started = time.perf_counter()
            shares = measure_near_copies(splits, seed=0)
            seconds = time.perf_counter() - started
            sizes = " / ".join(str(len(splits[name])) for name in ("train", "val", "test"))
            print(f"| {task} | {seed} | {sizes} | {shares['val']:.0%} | {shares['test']:.0%} | {seconds:.2f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
