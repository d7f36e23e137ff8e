"""`img2num compare` and `img2num recipe`: train several models on the same data and compare them."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2num.cli.arguments import (
    BACKEND_HELP,
    add_data_options,
    count,
    data_config,
    fraction,
    model_list,
    points_config,
    positive_float,
    positive_int,
    synthetic_data_options,
)
from img2num.config import BACKENDS, RECIPE_EPOCHS, RECIPE_MODELS, TrainConfig


def add_compare_parser(commands) -> None:
    """Add the `compare` command to `commands` (the subparsers of the main parser)."""
    train_defaults = TrainConfig()
    command = commands.add_parser(
        "compare", help="train several models and the baselines on the same splits; leaderboard and HTML report",
        description="Train every named model (and fit two baselines: the training mean and ridge regression "
        "on downsampled pixels) on identical splits with the same seeds, and write a leaderboard sorted by test "
        "MSE, loss curves, per-model diagnostics, report.md and a self-contained report.html. The best possible "
        "MSE comes from the data folder's task.json (written by `img2num generate`) or --reference-mse.",
    )
    command.add_argument("data", type=Path, help="a label CSV naming image files (or a folder holding one), a training .npz file, or a folder from `img2num generate`")
    command.add_argument("--val", type=Path, help="validation .npz file or label CSV (default: the folder's val.npz, else a held-out share)")
    command.add_argument("--test", type=Path, help="test .npz file or label CSV (default: the folder's test.npz, else a held-out share)")
    command.add_argument("--models", type=model_list, help="comma-separated model names, such as mlp,cnn; auto is the automatic choice (default: every registered model)")
    command.add_argument("--epochs", type=positive_int, help=f"epochs per model (default {train_defaults.epochs})")
    command.add_argument("--seeds", type=positive_int, default=1, help="train every model on this many seeds, SEED, SEED+1, ...; report mean and spread (default %(default)s)")
    command.add_argument("--seed", type=count, default=0, help="first training seed, also the seed of held-out shares (default %(default)s)")
    command.add_argument("--val-fraction", type=fraction, default=train_defaults.val_fraction, help="share held out for validation when none is given (default %(default)s)")
    command.add_argument("--reference-mse", type=positive_float, help="best possible test MSE of the task (default: from the data folder's task.json)")
    command.add_argument("--backend", choices=BACKENDS, default=train_defaults.backend, help=BACKEND_HELP)
    command.add_argument("--time-limit", metavar="SECONDS", type=positive_float, help="most seconds the whole comparison takes, shared equally by the models and seeds still to train (default: none; auto among the models takes its own default)")
    command.add_argument("--cv", choices=("groups",), help="groups: cross-validate by whole groups of --group-column instead of one split: each fold tests groups no other fold tests; mean and spread of test MSE and R^2 over folds (costs --folds times the training)")
    command.add_argument("--folds", metavar="K", type=positive_int, default=5, help="with --cv groups, the most folds: one group each when there are at most K groups, else K folds of whole groups (default %(default)s)")
    command.add_argument("--no-runs", action="store_true", help="do not keep each trained run folder in OUT/runs")
    command.add_argument("--out", type=Path, default=Path("results/compare"), help="results folder (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing results folder once the new one is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    add_data_options(command, test_fraction=0.2)
    command.set_defaults(command=run_compare)


def run_compare(args: argparse.Namespace) -> None:
    """Run the comparison; print the leaderboard, the best model and the results folder."""
    from img2num.comparison import compare
    from img2num.metrics import r2_text

    summary = compare(
        args.data,
        args.models,
        val=args.val,
        test=args.test,
        out_dir=args.out,
        epochs=args.epochs,
        seeds=args.seeds,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        reference_mse=args.reference_mse,
        options=data_config(args),
        keep_runs=not args.no_runs,
        overwrite=args.overwrite,
        quiet=args.quiet,
        backend=args.backend,
        time_limit=args.time_limit,
        cv=args.cv,
        folds=args.folds,
    )
    width = max(len(row["name"]) for row in summary["leaderboard"])
    if args.cv:
        folds = len(summary["cv"]["folds"])
        for row in summary["leaderboard"]:
            print(f"{row['name']:<{width}}  test MSE {row['test_mse']:.4g} ± {row['test_mse_sd']:.4g} over {folds} folds  R^2 {r2_text(row['test_r2'])}")
        print(f"best: {summary['best']}")
        print(f"results in {summary['folder']} (report.html, report.md, leaderboard.md, results.json)")
        return
    for row in summary["leaderboard"]:
        spread = f" ± {row['test_mse_sd']:.4g}" if row["seeds"] > 1 else ""
        ratio = "" if row["mse_over_reference"] is None else f"  ({row['mse_over_reference']:.3f}x best possible)"
        print(f"{row['name']:<{width}}  test MSE {row['test_mse']:.4g}{spread}{ratio}")
    print(f"best: {summary['best']}")
    print(f"results in {summary['folder']} (report.html, report.md, leaderboard.md, results.json)")


def add_recipe_parser(commands) -> None:
    """Add the `recipe` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser(
        "recipe", parents=[synthetic_data_options()], help="the main job: data, both tutorial models, evaluation, pictures, comparison",
        description="Generate the points data, train each model with the tutorial's settings, "
        "evaluate on the test split, draw every picture and write a comparison into one folder.",
    )
    command.add_argument("--out", type=Path, default=Path("results/recipe"), help="results folder (default %(default)s)")
    command.add_argument("--epochs", type=positive_int, default=RECIPE_EPOCHS, help="epochs per model (default %(default)s, as in the tutorial)")
    command.add_argument("--models", nargs="+", default=list(RECIPE_MODELS), help="models to compare (default: %(default)s)")
    command.add_argument("--seed", type=count, default=0, help="seed of weights and shuffling (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing results folder once the new one is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    command.add_argument("--data", type=Path, help="compare the models on this data (a label CSV naming image files, a folder holding one, an .npz file or a folder from `img2num generate`) instead of generating the points data")
    add_data_options(command, channels=False)
    command.set_defaults(command=run_recipe)


def run_recipe(args: argparse.Namespace) -> None:
    """Run the recipe; print each model's test score, the best model and the results folder."""
    from img2num import recipe
    from img2num.metrics import r2_text

    summary = recipe.run_recipe(
        args.out,
        points_config(args),
        epochs=args.epochs,
        models=tuple(args.models),
        seed=args.seed,
        overwrite=args.overwrite,
        quiet=args.quiet,
        data=args.data,
        data_options=data_config(args),
    )
    scored = summary["scored_on"]
    for name, result in summary["models"].items():
        metrics = result["metrics"][scored]
        print(f"{name:<6} {scored} MSE {metrics['mse']:.2f}  R^2 {r2_text(metrics['r2'])}")
    print(f"best: {summary['best']}")
    print(f"results in {summary['folder']} (comparison.md, loss_curves.png, one folder per model)")
