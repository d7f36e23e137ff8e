"""Which weights generalize: the best validation epoch's, the last epoch's, or an average of the
last epochs' (stochastic weight averaging), measured on each task's held-out test split.

One training per task and model (no time limit, the default settings: patience 40, the learning
rate halving on plateaus) records the weights of every epoch it needs; each way of keeping
weights is then scored on the validation and test splits of the same run, so the comparison is
side by side on one trajectory. The real-image tasks come first (docs/real_images.md says how
they are built); haze with --groups holds out whole photographs, as a user who knows the scenes
would validate.

    .venv/bin/python benchmarks/kept_weights.py                         # digits, counting, haze
    .venv/bin/python benchmarks/kept_weights.py --tasks points --models pixel_gap
    .venv/bin/python benchmarks/kept_weights.py --quick                 # small sizes, a smoke run

Prints one table per task: val MSE and test MSE (R^2) of best, last and average-of-K weights.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import img2num.fitting as fitting  # noqa: E402
from img2num import train  # noqa: E402
from img2num.config import DataConfig, TrainConfig  # noqa: E402
from img2num.data import resolve_splits  # noqa: E402
from img2num.metrics import regression_metrics  # noqa: E402
from real_images import FULL_SIZES, QUICK_SIZES, SCENE_COLUMN, build_task  # noqa: E402

# Each task's model: the family `auto` chooses there (docs/real_images.md).
MODELS = {"digits": "cnn_gap", "counting": "cnn_gap", "haze": "pixel_gap", "points": "pixel_gap", "dust": "pixel_gap"}
AVERAGES = (5, 10, 20)


def snapshots_callback(keep_last: int):
    """A Keras callback keeping the best validation epoch's weights and the last `keep_last`."""
    import keras

    class Snapshots(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.recent = math.inf, 0, None, []

        def on_epoch_end(self, epoch, logs=None):
            weights = self.model.get_weights()
            if logs["val_loss"] < self.best:
                self.best, self.best_epoch, self.best_weights = logs["val_loss"], epoch + 1, weights
            self.recent = [*self.recent[-(keep_last - 1):], (epoch + 1, weights)]

    return Snapshots()


def measure(folder: Path, model: str, groups: bool, seed: int, epochs: int | None) -> tuple[list[dict], list[dict]]:
    """Train `model` once on the task in `folder` and score each way of keeping its weights;
    returns the scores and the run's per-epoch history."""
    snapshots = snapshots_callback(max(AVERAGES))
    original = fitting.epoch_callbacks

    def with_snapshots(config, loss_factor):
        recorder, stopper, callbacks = original(config, loss_factor)
        return recorder, stopper, [*callbacks, snapshots]

    options = DataConfig(group_column=SCENE_COLUMN) if groups else DataConfig()
    config = TrainConfig(model=model, seed=seed, restore_best=False, **({"epochs": epochs} if epochs else {}))
    fitting.epoch_callbacks = with_snapshots
    try:
        run = train(folder / "labels.csv", config, data_options=options, quiet=True, near_copies=False)
    finally:
        fitting.epoch_callbacks = original
    splits = resolve_splits(folder / "labels.csv", seed=seed, options=options)
    splits = {name: splits[name] for name in ("val", "test")}
    last = snapshots.recent[-1][0]
    ways = [("best", f"epoch {snapshots.best_epoch}", snapshots.best_weights), ("last", f"epoch {last}", snapshots.recent[-1][1])]
    for k in AVERAGES:
        kept = snapshots.recent[-k:]
        mean = [sum(arrays) / len(kept) for arrays in zip(*(w for _, w in kept))]
        ways.append((f"average of {len(kept)}", f"epochs {kept[0][0]}-{kept[-1][0]}", mean))
    rows = []
    for name, epochs_text, weights in ways:
        run.model.set_weights(weights)
        predictions = run.predict_splits(splits)
        scores = {split: regression_metrics(splits[split].y, predictions[split]) for split in splits}
        rows.append({"weights": name, "epochs": epochs_text, **{f"{s}_{k}": scores[s][k] for s in scores for k in ("mse", "r2")}})
    return rows, run.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "counting", "haze"], choices=sorted(MODELS))
    parser.add_argument("--models", nargs="*", help="one model per task, in the order of --tasks (default: the family auto chooses)")
    parser.add_argument("--quick", action="store_true", help="small splits and 30 epochs, a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/kept_weights"))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the figures below do not depend on it)")
    for index, task in enumerate(args.tasks):
        model = args.models[index] if args.models else MODELS[task]
        groups = task == "haze"
        folder = args.out / task
        build_task(task, folder, (QUICK_SIZES if args.quick else FULL_SIZES)[task], args.seed, args.quick, groups=groups)
        rows, history = measure(folder, model, groups, args.seed, 30 if args.quick else None)
        print(f"\n{task} ({model}{', validation on held-out scenes' if groups else ''})")
        print(f"{'weights':<14} {'epochs':<14} {'val MSE':>9} {'test MSE':>9} {'test R^2':>8}")
        for row in rows:
            print(f"{row['weights']:<14} {row['epochs']:<14} {row['val_mse']:>9.4g} {row['test_mse']:>9.4g} {row['test_r2']:>8.4f}")
        with open(args.out / f"{task}.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        with open(args.out / f"{task}_history.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)


if __name__ == "__main__":
    main()
