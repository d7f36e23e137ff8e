"""The main job: the tutorial's whole workflow (data, two models, evaluation, pictures, comparison)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import numpy as np

from img2num.config import RECIPE_EPOCHS, RECIPE_MODELS, DataConfig, PointsConfig, TrainConfig
from img2num.data import Dataset, load_split_folder, read_task, resolve_splits, split_records, write_points
from img2num.errors import Img2NumError
from img2num.io import FolderKind, atomic_folder, check_replaceable, data_reads, write_json, write_text
from img2num.registry import check_model_name

# What `--overwrite` may replace with a recipe's results (older ones without the marker by their files).
RECIPE_FOLDER = FolderKind("recipe", "recipe results folder", ("summary.json", "comparison.md"))


def run_recipe(
    out_dir: str | Path = "results/recipe",
    points: PointsConfig = PointsConfig(),
    epochs: int = RECIPE_EPOCHS,
    models: tuple[str, ...] = RECIPE_MODELS,
    seed: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
    data=None,
    data_options: DataConfig | None = None,
) -> dict:
    """Generate the points data (or take the user's), train each model with the tutorial's plain
    settings (`TrainConfig.plain()`), and compare them.

    The results folder holds `data/` (the generated splits; for the user's data, `split.csv`
    and `skipped.csv` instead), `samples.png`, one run folder per model (with its loss curve and
    test predictions), `loss_curves.png` (all models side by side), `comparison.md` and
    `summary.json`. It appears only when everything is done.

    Args:
        out_dir: The results folder to create.
        points: Image size, split sizes and data seed.
        epochs: Training epochs per model (the tutorial used 1000).
        models: Registered model names to train and compare.
        seed: Seed for weight initialisation and shuffling.
        overwrite: Replace an existing results folder once the new one is complete.
        quiet: Print no training progress.
        stream: Where progress goes (default: stderr).
        data: The user's data instead of the points task: anything `train` takes (a label CSV
            naming image files, a folder holding one, an `.npz` file, a generated folder).
        data_options: How label CSVs and image files are read.

    Returns:
        The summary written to `summary.json`: each model's metrics per split, parameters,
        training seconds, and the best model on test MSE.

    Raises:
        Img2NumError: A bad option, an unknown model, or an existing folder without `overwrite`.
    """
    from img2num import plots
    from img2num.training import train

    configs = {name: TrainConfig.plain(model=name, epochs=epochs, seed=seed) for name in models}
    for name in models:
        check_model_name(name)
    if not models:
        raise Img2NumError("the recipe needs at least one model")
    if data is None and points.train < 2:
        raise Img2NumError(f"the recipe needs at least 2 training samples, got {points.train}")
    check_replaceable(out_dir, overwrite, RECIPE_FOLDER, data_reads(data))
    with atomic_folder(out_dir, overwrite, RECIPE_FOLDER) as folder:
        if data is None:
            write_points(folder / "data", points)
            # Runs record their data where it will be once the folder is in place, not under
            # its temporary name.
            final = Path(out_dir) / "data"
            splits = {
                name: Dataset(split.x, split.y, str(final / f"{name}.npz"))
                for name, split in load_split_folder(folder / "data").items()
            }
        else:
            # Read (and check) the data once; every model trains on the same splits.
            splits = resolve_splits(data, val_fraction=TrainConfig().val_fraction, seed=seed, options=data_options)
            check_replaceable(out_dir, overwrite, RECIPE_FOLDER, data_reads(*splits.values()))
            for name, text in split_records(splits).items():
                write_text(folder / name, text)
        first = splits["train"].take(np.arange(min(len(splits["train"]), 25))).to_dataset()
        plots.sample_grid(first.x, first.y, folder / "samples.png", title="training samples")
        runs = {
            name: train(
                splits["train"], config, val=splits.get("val"), test=splits.get("test"),
                run_dir=folder / name, quiet=quiet, stream=stream,
            )
            for name, config in configs.items()
        }
        task = read_task(folder / "data" if data is None else data)
        reference = task["reference_mse"] if task else None
        plots.compare_loss_curves({name: run.history for name, run in runs.items()}, folder / "loss_curves.png", reference)
        scored = "test" if "test" in splits else "val"
        summary = {
            "data": str(data) if data is not None else "points",
            "points": vars(points) if data is None else None,
            "reference_mse": reference,
            "train": {key: value for key, value in configs[models[0]].to_dict().items() if key != "model"},
            "scored_on": scored,
            "models": {
                name: {
                    "metrics": run.metrics,
                    "parameters": run.config["parameters"],
                    "train_seconds": run.config["train_seconds"],
                    "final_loss": run.history[-1]["loss"],
                    "final_val_loss": run.history[-1]["val_loss"],
                }
                for name, run in runs.items()
            },
            "best": min(runs, key=lambda name: runs[name].metrics[scored]["mse"]),
        }
        write_json(folder / "summary.json", summary)
        write_text(
            folder / "comparison.md",
            _comparison_markdown(points, configs[models[0]], runs, scored, reference, data, splits),
        )
    summary["folder"] = str(out_dir)
    return summary


def _comparison_markdown(
    points: PointsConfig, config: TrainConfig, runs: dict, scored: str, reference, data, splits
) -> str:
    from img2num.data import shape_text
    from img2num.report import comparison_table, overfitting_note, reference_note, verdict

    if data is None:
        sizes = " / ".join(f"{size} {split}" for split, size in points.split_sizes.items())
        task = "the points task"
        described = (
            f"points images {points.height}x{points.width}x{points.channels}, {sizes}, data seed {points.seed}"
        )
    else:
        sizes = " / ".join(f"{len(split)} {name}" for name, split in splits.items())
        task = f"{data}"
        described = f"{data}, images {shape_text(splits['train'].image_shape)}, {sizes}"
    return (
        f"# Recipe: {' vs '.join(runs)} on {task}\n\n"
        f"Data: {described}.\n"
        f"Training: {config.epochs} epochs, batch {config.batch_size}, Adam at "
        f"{config.learning_rate:g}, MSE loss, seed {config.seed}.\n\n"
        f"{comparison_table(runs, scored)}\n{verdict(runs, scored)}\n\n{overfitting_note(runs)}\n\n"
        f"{reference_note(runs, reference, scored)}"
        "Training and validation loss per epoch (dashed: the best possible MSE):\n\n![loss curves](loss_curves.png)\n\n"
        + "".join(f"![{name} predictions]({name}/predictions.png)\n" for name in runs)
    )
