"""Print the coverage and mean width of img2num's prediction intervals beside the Bayes-optimal ones.

For the points task (16x16) and the dust task (64x64, 2-pixel cells) it trains `pixel_gap` with
the default settings on 1500 training images and a validation split of VAL images (which also
calibrates the intervals), then scores on TEST fresh images at levels 0.8, 0.9 and 0.95:

- normalized: the run's own intervals (split conformal, scaled by the difficulty fitted on the
  training split's residuals, so that every validation image gives a score);
- plain: split conformal with one width for every image, on the same validation split;
- halves: normalized as img2num did before, the difficulty fitted on half of the validation
  split and the other half giving the scores (half as many);
- fresh set: normalized, calibrated on VAL other fresh images that played no part in training,
  which shows what reusing the validation split (early stopping, then calibration) costs;
- bayes: the shortest intervals from the exact posterior (`img2num.bayes`).

Coverage is given with its binomial standard error; "low" and "high" are the coverage on the
third of test images with the smallest and the largest labels (adaptive intervals keep both
near the level). Run:

    .venv/bin/python benchmarks/intervals.py [--test 10000] [--val 2000] [--tasks points,dust] [--dust-epochs N] [--seeds 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from img2num.bayes import dust_bayes_intervals, points_bayes_intervals
from img2num.config import DustConfig, TrainConfig
from img2num.data import generate_dust, generate_points
from img2num.data.dust import dusty_cells
from img2num.intervals import calibrate, interval_metrics
from img2num.training import train

LEVELS = (0.8, 0.9, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=int, default=10_000, help="fresh test images per task (default %(default)s)")
    parser.add_argument("--val", type=int, default=2000, help="validation (= calibration) images (default %(default)s)")
    parser.add_argument("--train", type=int, default=1500, help="training images (default %(default)s)")
    parser.add_argument("--tasks", default="points,dust", help="comma-separated: points, dust (default %(default)s)")
    parser.add_argument("--dust-epochs", type=int, default=TrainConfig().epochs, help="most epochs on the dust task (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0, 1, ... (fresh data and training) (default %(default)s)")
    args = parser.parse_args()
    print("| task | seed | level | method | coverage | low third | high third | mean width | x Bayes width |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    rows = []
    for task in args.tasks.split(","):
        for seed in range(args.seeds):
            rows += run_task(task.strip(), args, seed)
    print("\nMeans over seeds (coverage: mean ± standard deviation over seeds):\n")
    print("| task | level | method | coverage | low third | high third | x Bayes width |")
    print("|---|---:|---|---:|---:|---:|---:|")
    keys = list(dict.fromkeys((row["task"], row["level"], row["method"]) for row in rows))
    for task, level, method in keys:
        group = [row for row in rows if (row["task"], row["level"], row["method"]) == (task, level, method)]
        mean = {name: np.mean([row[name] for row in group]) for name in ("coverage", "low", "high", "ratio")}
        spread = np.std([row["coverage"] for row in group], ddof=1) if len(group) > 1 else 0.0
        print(
            f"| {task} | {level} | {method} | {mean['coverage']:.3f} ± {spread:.3f} | {mean['low']:.3f} "
            f"| {mean['high']:.3f} | {mean['ratio']:.3f} |"
        )


def run_task(task: str, args, seed: int) -> list[dict]:
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    cells = DustConfig().cells
    if task == "points":
        draw = lambda n, rng: generate_points(n, rng)  # noqa: E731
        epochs = TrainConfig().epochs
    elif task == "dust":
        draw = lambda n, rng: generate_dust(n, rng)  # noqa: E731
        epochs = args.dust_epochs
    else:
        raise SystemExit(f"unknown task {task!r}; expected points or dust")
    train_set, val, test, fresh = (draw(n, rng) for n, rng in zip((args.train, args.val, args.test, args.val), streams))
    started = time.perf_counter()
    run = train(train_set, TrainConfig(model="pixel_gap", epochs=epochs, seed=seed), val=val, quiet=True)
    seconds = time.perf_counter() - started
    predicted = run.predict(test.x)
    label_range = run.calibration.label_range
    methods = {
        "normalized": run.calibration,
        "plain": calibrate(val.y, run.predict(val.x), np.random.default_rng(seed), "plain", label_range),
        "halves": calibrate(val.y, run.predict(val.x), np.random.default_rng([seed, 13]), "normalized", label_range),
        "fresh set": calibrate(fresh.y, run.predict(fresh.x), np.random.default_rng(seed), "normalized", label_range),
    }
    mse = float(np.mean((predicted - test.y) ** 2))
    rows = []
    thirds = np.argsort(np.argsort(test.y, kind="stable")) * 3 // len(test.y)
    for level in LEVELS:
        if task == "points":
            bayes = points_bayes_intervals(level)
            statistic = test.x.reshape(len(test.y), -1).sum(axis=1)
        else:
            bayes = dust_bayes_intervals(level, cells)
            statistic = dusty_cells(test.x, DustConfig().cell)
        lower, upper = bayes.interval(statistic)
        bounds = {name: calibration.interval(predicted, level) for name, calibration in methods.items()}
        bounds["bayes"] = (None, lower, upper)
        bayes_width = float(np.mean(upper - lower))
        for name, interval in bounds.items():
            inside = (interval[1] <= test.y) & (test.y <= interval[2])
            metrics = interval_metrics(test.y, interval if name != "bayes" else _as_interval(interval), level)
            error = np.sqrt(metrics["coverage"] * (1 - metrics["coverage"]) / len(inside))
            low, high = inside[thirds == 0].mean(), inside[thirds == 2].mean()
            rows.append(dict(task=task, level=level, method=name, coverage=metrics["coverage"], low=low, high=high, ratio=metrics["mean_width"] / bayes_width))
            print(
                f"| {task} | {seed} | {level} | {name} | {metrics['coverage']:.3f} ± {error:.3f} | {low:.3f} | {high:.3f} "
                f"| {metrics['mean_width']:.2f} | {metrics['mean_width'] / bayes_width:.3f} |"
            )
    fresh_mse = float(np.mean((run.predict(fresh.x) - fresh.y) ** 2))
    print(
        f"| {task} | {seed} | | (pixel_gap: MSE test {mse:.3f}, validation {run.metrics['val']['mse']:.3f}, fresh set {fresh_mse:.3f}; "
        f"{run.config['epochs_run']} epochs, {seconds:.0f} s; "
        f"{len(run.calibration.scores)} calibration scores; {len(test.y)} test images) | | | | | |",
        flush=True,
    )
    return rows


def _as_interval(bounds):
    from img2num.intervals import Interval

    return Interval(None, bounds[1], bounds[2])


if __name__ == "__main__":
    main()
