"""`img2num models` and `img2num train`: the models there are, and training one into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2num.cli.arguments import (
    BACKEND_HELP,
    add_data_options,
    count,
    data_config,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from img2num.cli.output import note
from img2num.config import BACKENDS, DEFAULT_TIME_LIMIT, PLAIN_SETTINGS, TRAINERS, TrainConfig


def add_models_parser(commands) -> None:
    """Add the `models` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser("models", help="list the registered models", description="List the registered models.")
    command.set_defaults(command=run_models)


def run_models(args: argparse.Namespace) -> None:
    """Print each model name `train --model` takes, with a line on what it is."""
    from img2num.autoselect import list_candidates
    from img2num.models import list_models
    from img2num.registry import list_families

    lines = {spec.name: spec.description for spec in list_models() + list_families()}
    names = ", ".join(candidate.name for candidate in list_candidates())
    lines["auto"] = f"the default of `train`: the best of {names} on validation data, within --time-limit"
    width = max(len(name) for name in lines)
    for name, text in lines.items():
        print(f"{name:<{width}}  {text}")


def add_train_parser(commands) -> None:
    """Add the `train` command to `commands` (the subparsers of the main parser)."""
    train_defaults = TrainConfig()
    command = commands.add_parser(
        "train", help="train one model and save a run folder",
        description="Train a model with MSE loss, validating after every epoch, and save the run "
        "(model, configuration, history, metrics, pictures) in one folder. By default training halves "
        "the learning rate on plateaus, stops when the validation loss stops falling (keeping the last "
        "epoch's weights, or the best epoch's when --epochs ends it first) and learns standardized "
        "targets; --plain trains as the tutorial did.",
    )
    command.add_argument("data", type=Path, help="training data: a label CSV naming image files (or a folder holding one), an .npz file, or a folder from `img2num generate`")
    command.add_argument("--val", type=Path, help="validation data, .npz or label CSV (default: the folder's val.npz or the CSV's val rows, else a held-out share)")
    command.add_argument("--test", type=Path, help="test data to score and draw, .npz or label CSV (default: the folder's test.npz or the CSV's test rows)")
    command.add_argument("--model", default=train_defaults.model, help="registered model name (see `img2num models`); backbone:PRESET or finetune:PRESET for a pretrained backbone (PRESET: efficientnet_lite0, a keras-hub preset, an hf:// or kaggle:// handle, or a local preset folder); or auto: try the candidate models by successive halving and keep the one with the lowest validation loss (default %(default)s)")
    command.add_argument("--time-limit", metavar="SECONDS", type=positive_float, help=f"most seconds training, evaluation and saving take, checked between epochs (default {DEFAULT_TIME_LIMIT:g} with --model auto, none with a named model)")
    command.add_argument("--devices", metavar="N", type=positive_int, help="train on N local devices, each batch split evenly among them (Keras' DataParallel, JAX backend; the batch size must divide by N) (default: every GPU/TPU when there are several, else 1)")
    command.add_argument("--finetune-stages", metavar="N", type=count, help=f"with --model finetune:PRESET, how many of the backbone's last stages train; 0 trains the whole network (default {train_defaults.finetune_stages})")
    plain = PLAIN_SETTINGS
    command.add_argument(
        "--plain", action="store_true",
        help=f"the tutorial's plain settings: {plain['epochs']} epochs of Adam at {plain['learning_rate']:g}, "
        f"batch {plain['batch_size']}, raw targets, no early stopping or learning-rate reduction "
        "(options given beside it still apply)",
    )
    command.add_argument("--epochs", type=positive_int, help=f"most epochs (default {train_defaults.epochs}; {plain['epochs']} with --plain)")
    command.add_argument("--batch-size", type=positive_int, help=f"batch size (default {train_defaults.batch_size}; {plain['batch_size']} with --plain)")
    command.add_argument("--learning-rate", type=positive_float, help=f"initial learning rate (default {train_defaults.learning_rate:g}; {plain['learning_rate']:g} with --plain)")
    command.add_argument("--patience", type=count, help=f"stop after this many epochs without a lower validation loss; 0 trains every epoch (default {train_defaults.patience}; 0 with --plain)")
    command.add_argument("--restore-best", action=argparse.BooleanOptionalAction, help="end training with the weights of the epoch with the lowest validation loss; --no-restore-best keeps the last epoch's (default: the last when early stopping ends training, the best when --epochs does)")
    command.add_argument("--average-epochs", type=count, help="keep the average of the last N epochs' weights (stochastic weight averaging) instead of one epoch's (default 0: one epoch's)")
    command.add_argument("--lr-patience", type=count, help=f"halve the learning rate after this many epochs without a lower validation loss; 0 never (default {train_defaults.lr_patience}; 0 with --plain)")
    command.add_argument("--standardize-targets", action=argparse.BooleanOptionalAction, help="learn targets standardized on the training split (default: on; off with --plain)")
    command.add_argument("--weight-decay", type=non_negative_float, help=f"AdamW weight decay; 0 uses Adam (default {train_defaults.weight_decay:g})")
    command.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random flips and 90-degree rotations (square images) of training images, for numbers that do not depend on orientation (default: off)")
    command.add_argument("--val-fraction", type=fraction, default=train_defaults.val_fraction, help="share held out for validation when no validation set is given (default %(default)s)")
    command.add_argument("--seed", type=count, default=train_defaults.seed, help="seed of weights, shuffling and augmentation (default %(default)s)")
    command.add_argument("--backend", choices=BACKENDS, default=train_defaults.backend, help=BACKEND_HELP)
    command.add_argument("--trainer", choices=TRAINERS, default=train_defaults.trainer, help="how epochs run: auto (img2num's compiled loop on JAX with data in memory; on PyTorch, Keras' fit on a channels-first copy of a convolutional model; else Keras' fit), scan, step, fit or fit_channels_first; all give the same numbers (default %(default)s)")
    command.add_argument("--run", type=Path, help="run folder (default: runs/MODEL, or runs/MODEL-2, ... if taken)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing run folder once the new run is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    command.add_argument("--no-pictures", action="store_true", help="draw no pictures (every other file of the run folder is written)")
    add_data_options(command)
    command.set_defaults(command=run_train)


def run_train(args: argparse.Namespace) -> None:
    """Train, then print the automatic choice (if any), the metrics and the run folder."""
    from img2num.metrics import format_metrics
    from img2num.registry import model_folder_name
    from img2num.training import train

    config = _train_config(args)
    run = train(
        args.data,
        config,
        val=args.val,
        test=args.test,
        run_dir=args.run or _free_run_folder(Path("runs"), model_folder_name(config.model)),
        overwrite=args.overwrite,
        quiet=args.quiet,
        data_options=data_config(args),
        pictures=not args.no_pictures,
    )
    if "selection" in run.config:
        from img2num.selection import selection_lines

        print("\n".join(selection_lines(run.config["selection"])))
    for split, metrics in run.metrics.items():
        print(f"[{split}]\n{format_metrics(metrics)}")
    data = run.config["data"]
    if data.get("rows_skipped"):
        note(f"skipped {data['rows_skipped']} of {data['rows_read']} rows; listed in {run.path / 'skipped.csv'}")
    dropped = data.get("validation", {}).get("dropped_by_gap", {})
    if any(dropped.values()):
        note("--gap dropped " + " and ".join(f"{count} {name} rows" for name, count in dropped.items() if count))
    print(f"run saved in {run.path}")


def _train_config(args) -> TrainConfig:
    given = {
        name: getattr(args, name)
        for name in (
            "model", "epochs", "batch_size", "learning_rate", "seed", "val_fraction", "patience",
            "restore_best", "average_epochs", "lr_patience", "standardize_targets", "weight_decay", "augment", "trainer", "backend",
            "time_limit", "finetune_stages", "devices",
        )
        if getattr(args, name, None) is not None
    }
    return TrainConfig.plain(**given) if args.plain else TrainConfig(**given)


def _free_run_folder(parent: Path, name: str) -> Path:
    candidate, number = parent / name, 1
    while candidate.exists():
        number += 1
        candidate = parent / f"{name}-{number}"
    return candidate
