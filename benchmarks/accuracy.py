"""Accuracy of the default model against the Bayes limit, beside the tutorial's two models.

On the points task with the tutorial's data budget (1500 training and 300 validation 16x16
images), trains the default model with the default settings, and the tutorial's `mlp` and `cnn`
with its plain settings (`TrainConfig.plain()`: 1000 epochs of Adam, no early stopping), then
prints each one's MSE on 10,000 fresh test images, its ratio to the exact Bayes reference
(`img2num.bayes.points_bayes_reference`), its training wall seconds, the epochs it ran and its
median seconds per epoch. With several seeds it prints the median and the range of each figure,
and each seed's test MSE.

    .venv/bin/python benchmarks/accuracy.py                      # the README table
    .venv/bin/python benchmarks/accuracy.py --plain-epochs 200   # shorter tutorial models
    .venv/bin/python benchmarks/accuracy.py --models cnn_gap resnet --tutorial-models \\
        --option batch_size=64 --seeds 0 1 2                      # try settings
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

from img2num.bayes import points_bayes_reference
from img2num.config import DEFAULT_MODEL, PointsConfig, TrainConfig
from img2num.data import generate_points_splits
from img2num.training import train


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE for a TrainConfig field, the value parsed as the field's type ("none" for None)."""
    key, _, value = text.partition("=")
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    if key not in fields:
        raise argparse.ArgumentTypeError(f"unknown TrainConfig field {key!r}; known: {', '.join(fields)}")
    default = getattr(TrainConfig(), key)
    if value.lower() == "none":
        return key, None
    if key == "restore_best" or isinstance(default, bool):  # restore_best is True, False or None
        return key, value.lower() in ("1", "true", "yes")
    if default is None:  # time_limit: seconds
        return key, float(value)
    kind = type(default)
    return key, kind(value)


def measure(config: TrainConfig, splits, bayes_mse: float) -> dict:
    started = time.perf_counter()
    run = train(splits["train"], config, val=splits["val"], test=splits["test"], quiet=True)
    wall = time.perf_counter() - started
    seconds = [row["seconds"] for row in run.history]
    mse = run.metrics["test"]["mse"]
    return {
        "mse": mse,
        "ratio": mse / bayes_mse,
        "train_seconds": run.config["train_seconds"],
        "wall_seconds": wall,
        "epochs_run": run.config["epochs_run"],
        "best_epoch": run.config["best_epoch"],
        "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "parameters": run.config["parameters"],
    }


def summary(values: list[float], digits: int) -> str:
    middle = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[DEFAULT_MODEL], help="models trained with the default settings")
    parser.add_argument("--tutorial-models", nargs="*", default=["mlp", "cnn"], help="models trained with the plain settings")
    parser.add_argument("--plain-epochs", type=int, default=1000, help="epochs of the plain settings (the tutorial's 1000)")
    parser.add_argument("--option", type=parse_option, action="append", default=[], help="KEY=VALUE: a TrainConfig field for the default-settings models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the data stays the same)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--test-size", type=int, default=10_000)
    args = parser.parse_args()

    import keras

    splits = generate_points_splits(PointsConfig(train=1500, val=300, test=args.test_size, seed=args.data_seed))
    reference = points_bayes_reference(16, 16)
    bayes = reference.mse
    test = splits["test"]
    # The best possible predictions of these very test images: their own sampling floor.
    lit = (test.x.reshape(len(test), -1) > 0).sum(axis=1)
    floor = float(((reference.predict(lit) - test.y) ** 2).mean())
    options = dict(args.option)
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"points 16x16: 1500 train / 300 val / {args.test_size} test images (data seed {args.data_seed}); "
        f"training seeds {args.seeds}; Bayes reference MSE {bayes:.2f} (the Bayes predictor scores "
        f"{floor:.2f} = {floor / bayes:.3f} x on these test images)"
    )
    if options:
        print(f"default settings changed: {options}")
    jobs = [(name, "default", TrainConfig(model=name, **options)) for name in args.models]
    jobs += [
        (name, f"plain, {args.plain_epochs} epochs", TrainConfig.plain(model=name, epochs=args.plain_epochs))
        for name in args.tutorial_models
    ]
    print()
    print("| model | settings | test MSE | per seed | x Bayes | train seconds | epochs run (best) | s/epoch | parameters | load |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, settings, config in jobs:
        results = [measure(dataclasses.replace(config, seed=seed), splits, bayes) for seed in args.seeds]
        column = lambda key: [result[key] for result in results]  # noqa: E731
        print(
            f"| {name} | {settings} | {summary(column('mse'), 2)} | {' / '.join(f'{v:.2f}' for v in column('mse'))} "
            f"| {summary(column('ratio'), 3)} "
            f"| {summary(column('train_seconds'), 1)} | {summary(column('epochs_run'), 0)} "
            f"({summary(column('best_epoch'), 0)}) | {summary(column('seconds_per_epoch'), 3)} "
            f"| {results[0]['parameters']:,} | {os.getloadavg()[0]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
