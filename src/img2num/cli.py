"""The command line: parse options, build the configuration, call one public function.

Heavy libraries load only inside the commands that need them, so `--help` and `models` answer
at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from img2num import __version__
from img2num.config import PLAIN_SETTINGS, RECIPE_EPOCHS, RECIPE_MODELS, PointsConfig, TrainConfig
from img2num.errors import Img2NumError


def main(argv: list[str] | None = None) -> int:
    """Run one img2num command.

    Args:
        argv: Arguments without the program name; None reads `sys.argv`.

    Returns:
        The exit status: 0 on success, 1 for a user error, 2 for a bad command line, 130 when
        interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.command(args) or 0
    except Img2NumError as error:
        return _fail(str(error))
    except OSError as error:
        # Files the user named that cannot be written or read: a user problem, not a bug.
        return _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
    except KeyboardInterrupt:
        return _fail("interrupted; nothing unfinished was left in place", status=130)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="img2num", description="Predict a number from an image: train, compare, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"img2num {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    points = _Parser(add_help=False)
    group = points.add_argument_group("points data")
    defaults = PointsConfig()
    group.add_argument("--height", type=_positive_int, default=defaults.height, help="image height (default %(default)s)")
    group.add_argument("--width", type=_positive_int, default=defaults.width, help="image width (default %(default)s)")
    group.add_argument("--channels", type=_positive_int, default=defaults.channels, help="image channels (default %(default)s)")
    group.add_argument("--train-size", type=_count, default=defaults.train, help="training samples (default %(default)s)")
    group.add_argument("--val-size", type=_count, default=defaults.val, help="validation samples (default %(default)s)")
    group.add_argument("--test-size", type=_count, default=defaults.test, help="test samples (default %(default)s)")
    group.add_argument("--data-seed", type=_count, default=defaults.seed, help="seed of the data (default %(default)s)")

    command = commands.add_parser(
        "generate", parents=[points], help="write the points data set as train/val/test .npz files",
        description="Write the tutorial's points data set: OUT/train.npz, val.npz and test.npz "
        "(a split of size 0 is skipped). Each holds x uint8 (N, H, W, C) and y float32 (N,).",
    )
    command.add_argument("out", type=Path, help="output folder")
    command.add_argument("--overwrite", action="store_true", help="replace existing split files")
    command.set_defaults(command=_generate)

    command = commands.add_parser("models", help="list the registered models", description="List the registered models.")
    command.set_defaults(command=_models)

    train_defaults = TrainConfig()
    command = commands.add_parser(
        "train", help="train one model and save a run folder",
        description="Train a model with MSE loss, validating after every epoch, and save the run "
        "(model, configuration, history, metrics, pictures) in one folder. By default training stops "
        "when the validation loss stops falling and keeps the best epoch's weights, halves the "
        "learning rate on plateaus and learns standardized targets; --plain trains as the tutorial did.",
    )
    command.add_argument("data", type=Path, help="training .npz file, or a folder from `img2num generate`")
    command.add_argument("--val", type=Path, help="validation .npz file (default: the folder's val.npz, else a held-out share)")
    command.add_argument("--test", type=Path, help="test .npz file to score and draw (default: the folder's test.npz)")
    command.add_argument("--model", default=train_defaults.model, help="registered model name (default %(default)s; see `img2num models`)")
    plain = PLAIN_SETTINGS
    command.add_argument(
        "--plain", action="store_true",
        help=f"the tutorial's plain settings: {plain['epochs']} epochs of Adam at {plain['learning_rate']:g}, "
        f"batch {plain['batch_size']}, raw targets, no early stopping or learning-rate reduction "
        "(options given beside it still apply)",
    )
    command.add_argument("--epochs", type=_positive_int, help=f"most epochs (default {train_defaults.epochs}; {plain['epochs']} with --plain)")
    command.add_argument("--batch-size", type=_positive_int, help=f"batch size (default {train_defaults.batch_size}; {plain['batch_size']} with --plain)")
    command.add_argument("--learning-rate", type=_positive_float, help=f"initial learning rate (default {train_defaults.learning_rate:g}; {plain['learning_rate']:g} with --plain)")
    command.add_argument("--patience", type=_count, help=f"stop after this many epochs without a lower validation loss and keep the best epoch's weights; 0 trains every epoch (default {train_defaults.patience}; 0 with --plain)")
    command.add_argument("--lr-patience", type=_count, help=f"halve the learning rate after this many epochs without a lower validation loss; 0 never (default {train_defaults.lr_patience}; 0 with --plain)")
    command.add_argument("--standardize-targets", action=argparse.BooleanOptionalAction, help="learn targets standardized on the training split (default: on; off with --plain)")
    command.add_argument("--weight-decay", type=_non_negative_float, help=f"AdamW weight decay; 0 uses Adam (default {train_defaults.weight_decay:g})")
    command.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random flips and 90-degree rotations (square images) of training images, for numbers that do not depend on orientation (default: off)")
    command.add_argument("--val-fraction", type=_fraction, default=train_defaults.val_fraction, help="share held out for validation when no validation set is given (default %(default)s)")
    command.add_argument("--seed", type=_count, default=train_defaults.seed, help="seed of weights, shuffling and augmentation (default %(default)s)")
    command.add_argument("--run", type=Path, help="run folder (default: runs/MODEL, or runs/MODEL-2, ... if taken)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing run folder once the new run is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    command.set_defaults(command=_train)

    command = commands.add_parser(
        "evaluate", help="score a run on labelled data",
        description="Print MSE, RMSE, MAE and R^2 of a run on a labelled .npz file and save them as JSON.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, help="labelled .npz file")
    command.add_argument("--output", type=Path, help="JSON file for the metrics (default: RUN/evaluations/DATA.json)")
    command.add_argument("--overwrite", action="store_true", help="replace an output file that holds anything but an earlier evaluation of the same data")
    command.set_defaults(command=_evaluate)

    command = commands.add_parser(
        "predict", help="predict with a run",
        description="Predict one number per image; write index,prediction (and label when known) as CSV.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, help=".npz file with images in x (labels in y optional)")
    command.add_argument("--output", type=Path, help="CSV file to write (default: print to stdout)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    command.set_defaults(command=_predict)

    command = commands.add_parser(
        "recipe", parents=[points], help="the main job: data, both tutorial models, evaluation, pictures, comparison",
        description="Generate the points data, train each model with the tutorial's settings, "
        "evaluate on the test split, draw every picture and write a comparison into one folder.",
    )
    command.add_argument("--out", type=Path, default=Path("results/recipe"), help="results folder (default %(default)s)")
    command.add_argument("--epochs", type=_positive_int, default=RECIPE_EPOCHS, help="epochs per model (default %(default)s, as in the tutorial)")
    command.add_argument("--models", nargs="+", default=list(RECIPE_MODELS), help="models to compare (default: %(default)s)")
    command.add_argument("--seed", type=_count, default=0, help="seed of weights and shuffling (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing results folder once the new one is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    command.set_defaults(command=_recipe)
    return parser


def _generate(args) -> None:
    from img2num.data import write_points

    paths = write_points(args.out, _points_config(args), overwrite=args.overwrite)
    for split, path in paths.items():
        print(f"{split}: {path}")


def _models(args) -> None:
    from img2num.models import list_models

    specs = list_models()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.description}")


def _train(args) -> None:
    from img2num.evaluation import format_metrics
    from img2num.training import train

    config = _train_config(args)
    run = train(
        args.data,
        config,
        val=args.val,
        test=args.test,
        run_dir=args.run or _free_run_folder(Path("runs"), config.model),
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    for split, metrics in run.metrics.items():
        print(f"[{split}]\n{format_metrics(metrics)}")
    print(f"run saved in {run.path}")


def _evaluate(args) -> None:
    from img2num.evaluation import evaluate, format_metrics

    output = args.output or args.run / "evaluations" / f"{args.data.stem}.json"
    print(format_metrics(evaluate(args.run, args.data, output=output, overwrite=args.overwrite)))
    print(f"metrics saved in {output}")


def _predict(args) -> None:
    from img2num.bundle import load_run
    from img2num.data import load_dataset
    from img2num.io import check_replaceable_file
    from img2num.prediction import predictions_csv, write_predictions

    if args.output is not None:
        check_replaceable_file(args.output, args.overwrite)
    run = load_run(args.run)
    data = load_dataset(args.data)
    predictions = run.predict(data.x, data.source)
    if args.output is None:
        sys.stdout.write(predictions_csv(predictions, data.y))
        return
    write_predictions(args.output, predictions, data.y, overwrite=args.overwrite)
    print(f"{len(predictions)} predictions written to {args.output}")


def _recipe(args) -> None:
    from img2num.recipe import run_recipe

    summary = run_recipe(
        args.out,
        _points_config(args),
        epochs=args.epochs,
        models=tuple(args.models),
        seed=args.seed,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    scored = summary["scored_on"]
    for name, result in summary["models"].items():
        metrics = result["metrics"][scored]
        print(f"{name:<6} {scored} MSE {metrics['mse']:.2f}  R^2 {metrics['r2']:.4f}")
    print(f"best: {summary['best']}")
    print(f"results in {summary['folder']} (comparison.md, loss_curves.png, one folder per model)")


def _train_config(args) -> TrainConfig:
    given = {
        name: getattr(args, name)
        for name in (
            "model", "epochs", "batch_size", "learning_rate", "seed", "val_fraction", "patience",
            "lr_patience", "standardize_targets", "weight_decay", "augment",
        )
        if getattr(args, name) is not None
    }
    return TrainConfig.plain(**given) if args.plain else TrainConfig(**given)


def _points_config(args) -> PointsConfig:
    return PointsConfig(
        height=args.height,
        width=args.width,
        channels=args.channels,
        train=args.train_size,
        val=args.val_size,
        test=args.test_size,
        seed=args.data_seed,
    )


def _free_run_folder(parent: Path, name: str) -> Path:
    candidate, number = parent / name, 1
    while candidate.exists():
        number += 1
        candidate = parent / f"{name}-{number}"
    return candidate


def _fail(message: str, status: int = 1) -> int:
    print(f"img2num: error: {' '.join(message.split())}", file=sys.stderr)
    return status


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other img2num error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parse_number(kind, text: str, check, expected: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not check(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _parse_number(int, text, lambda v: v >= 1, "a whole number of at least 1")


def _count(text: str) -> int:
    return _parse_number(int, text, lambda v: v >= 0, "a whole number of at least 0")


def _positive_float(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def _non_negative_float(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def _fraction(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 < v < 1, "a number between 0 and 1")
