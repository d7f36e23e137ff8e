"""The main job: the tutorial's whole workflow (data, two models, evaluation, pictures, comparison)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from img2num.config import RECIPE_EPOCHS, RECIPE_MODELS, PointsConfig, TrainConfig
from img2num.data import load_split_folder, write_points
from img2num.errors import Img2NumError
from img2num.io import atomic_folder, check_replaceable, write_json, write_text
from img2num.models import get_model_spec


def run_recipe(
    out_dir: str | Path = "results/recipe",
    points: PointsConfig = PointsConfig(),
    epochs: int = RECIPE_EPOCHS,
    models: tuple[str, ...] = RECIPE_MODELS,
    seed: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> dict:
    """Generate the points data, train each model with the tutorial's plain settings
    (`TrainConfig.plain()`), and compare them.

    The results folder holds `data/` (the splits), `samples.png`, one run folder per model (with
    its loss curve and test predictions), `loss_curves.png` (all models side by side),
    `comparison.md` and `summary.json`. It appears only when everything is done.

    Args:
        out_dir: The results folder to create.
        points: Image size, split sizes and data seed.
        epochs: Training epochs per model (the tutorial used 1000).
        models: Registered model names to train and compare.
        seed: Seed for weight initialisation and shuffling.
        overwrite: Replace an existing results folder once the new one is complete.
        quiet: Print no training progress.
        stream: Where progress goes (default: stderr).

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
        get_model_spec(name)
    if not models:
        raise Img2NumError("the recipe needs at least one model")
    if points.train < 2:
        raise Img2NumError(f"the recipe needs at least 2 training samples, got {points.train}")
    check_replaceable(out_dir, overwrite)
    with atomic_folder(out_dir, overwrite) as folder:
        write_points(folder / "data", points)
        splits = load_split_folder(folder / "data")
        plots.sample_grid(splits["train"].x, splits["train"].y, folder / "samples.png", title="training samples")
        runs = {
            name: train(folder / "data", config, run_dir=folder / name, quiet=quiet, stream=stream)
            for name, config in configs.items()
        }
        plots.compare_loss_curves({name: run.history for name, run in runs.items()}, folder / "loss_curves.png")
        scored = "test" if "test" in splits else "val"
        summary = {
            "points": vars(points),
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
        write_text(folder / "comparison.md", _comparison_markdown(points, configs[models[0]], runs, scored))
    summary["folder"] = str(out_dir)
    return summary


def _comparison_markdown(points: PointsConfig, config: TrainConfig, runs: dict, scored: str) -> str:
    from img2num.report import comparison_table, overfitting_note, verdict

    sizes = " / ".join(f"{size} {split}" for split, size in points.split_sizes.items())
    return (
        f"# Recipe: {' vs '.join(runs)} on the points task\n\n"
        f"Data: points images {points.height}x{points.width}x{points.channels}, {sizes}, "
        f"data seed {points.seed}.\n"
        f"Training: {config.epochs} epochs, batch {config.batch_size}, Adam at "
        f"{config.learning_rate:g}, MSE loss, seed {config.seed}.\n\n"
        f"{comparison_table(runs, scored)}\n{verdict(runs, scored)}\n\n{overfitting_note(runs)}\n\n"
        "Training and validation loss per epoch:\n\n![loss curves](loss_curves.png)\n\n"
        + "".join(f"![{name} predictions]({name}/predictions.png)\n" for name in runs)
    )
