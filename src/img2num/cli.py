"""The command line: parse options, build the configuration, call one public function.

Heavy libraries load only inside the commands that need them, so `--help` and `models` answer
at once.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

from img2num import interrupts
from img2num.startup import __version__
from img2num.config import (
    BACKENDS,
    CACHE_MB,
    DEFAULT_TIME_LIMIT,
    PLAIN_SETTINGS,
    RECIPE_EPOCHS,
    RECIPE_MODELS,
    RESIZE_MODES,
    TRAINERS,
    DataConfig,
    DustConfig,
    PointsConfig,
    ServeConfig,
    TrainConfig,
)
from img2num.errors import Img2NumError, Img2NumWarning

BACKEND_HELP = (
    "Keras backend: auto (KERAS_BACKEND when set, else the faster one for the model and image size), "
    "jax, torch or tensorflow (default %(default)s)"
)

INTERRUPTED = "interrupted; nothing unfinished was left in place"
# Bad files or rows `predict` lists one per line; more are summed up in one line.
BAD_LINES_SHOWN = 10

# Kept here rather than imported from img2num.data, which loads numpy; `--help` stays instant.
TASK_CHOICES = ("points", "dust")


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
        with interrupts.exit_on_interrupt(f"img2num: error: {INTERRUPTED}"), _without_pyplot(), warnings.catch_warnings():
            # img2num's warnings (a model that barely beats the mean) as one line each.
            warnings.showwarning = _show_warning
            return args.command(args) or 0
    except Img2NumError as error:
        return _fail(str(error))
    except OSError as error:
        # Files the user named that cannot be written or read: a user problem, not a bug.
        return _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
    except KeyboardInterrupt:
        return _fail(INTERRUPTED, status=130)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="img2num", description="Predict a number from an image: train, compare, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"img2num {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    points = _Parser(add_help=False)
    group = points.add_argument_group("synthetic data")
    defaults = PointsConfig()
    dust = DustConfig()
    # Sizes default to None so that each task can have its own (points 16x16x1, dust 64x64x3).
    group.add_argument("--height", type=_positive_int, help=f"image height (default {defaults.height}; dust task {dust.height})")
    group.add_argument("--width", type=_positive_int, help=f"image width (default {defaults.width}; dust task {dust.width})")
    group.add_argument("--channels", type=_positive_int, help=f"image channels (default {defaults.channels}; the dust task is RGB)")
    group.add_argument("--train-size", type=_count, default=defaults.train, help="training samples (default %(default)s)")
    group.add_argument("--val-size", type=_count, default=defaults.val, help="validation samples (default %(default)s)")
    group.add_argument("--test-size", type=_count, default=defaults.test, help="test samples (default %(default)s)")
    group.add_argument("--data-seed", type=_count, default=defaults.seed, help="seed of the data (default %(default)s)")

    command = commands.add_parser(
        "generate", parents=[points], help="write a synthetic data set (points or dust) as .npz files or PNG files",
        description="Write a synthetic data set: OUT/train.npz, val.npz and test.npz (a split of size 0 "
        "is skipped), each holding x uint8 (N, H, W, C) and y float32 (N,); with --format images, "
        "OUT/images/SPLIT/N.png and OUT/labels.csv instead. OUT/task.json records the task, its options "
        "and the best possible MSE, which `img2num compare` reads.",
    )
    command.add_argument("out", type=Path, help="output folder")
    command.add_argument(
        "--format", choices=("npz", "images"), default="npz",
        help="npz: train/val/test.npz; images: OUT/images/SPLIT/N.png and OUT/labels.csv "
        "(file,label,split), the folder-and-CSV form (default %(default)s)",
    )
    command.add_argument("--overwrite", action="store_true", help="replace existing split files")
    command.add_argument("--task", choices=TASK_CHOICES, default="points", help="synthetic task (default %(default)s): "
                         "points = n points dropped on a 16x16 image, label n; dust = RGB solar panel, label = dust rate in percent")
    group = command.add_argument_group("dust task")
    group.add_argument("--cell", type=_positive_int, help=f"side of a dust cell in pixels (default {dust.cell})")
    group.add_argument("--noise", type=_dust_noise, help=f"pixel noise, 0 to 0.1; the reference is exact up to 0.02 (default {dust.noise})")
    command.set_defaults(command=_generate)

    command = commands.add_parser("models", help="list the registered models", description="List the registered models.")
    command.set_defaults(command=_models)

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
    command.add_argument("--time-limit", metavar="SECONDS", type=_positive_float, help=f"most seconds training, evaluation and saving take, checked between epochs (default {DEFAULT_TIME_LIMIT:g} with --model auto, none with a named model)")
    command.add_argument("--finetune-stages", metavar="N", type=_count, help=f"with --model finetune:PRESET, how many of the backbone's last stages train; 0 trains the whole network (default {train_defaults.finetune_stages})")
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
    command.add_argument("--patience", type=_count, help=f"stop after this many epochs without a lower validation loss; 0 trains every epoch (default {train_defaults.patience}; 0 with --plain)")
    command.add_argument("--restore-best", action=argparse.BooleanOptionalAction, help="end training with the weights of the epoch with the lowest validation loss; --no-restore-best keeps the last epoch's (default: the last when early stopping ends training, the best when --epochs does)")
    command.add_argument("--lr-patience", type=_count, help=f"halve the learning rate after this many epochs without a lower validation loss; 0 never (default {train_defaults.lr_patience}; 0 with --plain)")
    command.add_argument("--standardize-targets", action=argparse.BooleanOptionalAction, help="learn targets standardized on the training split (default: on; off with --plain)")
    command.add_argument("--weight-decay", type=_non_negative_float, help=f"AdamW weight decay; 0 uses Adam (default {train_defaults.weight_decay:g})")
    command.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random flips and 90-degree rotations (square images) of training images, for numbers that do not depend on orientation (default: off)")
    command.add_argument("--val-fraction", type=_fraction, default=train_defaults.val_fraction, help="share held out for validation when no validation set is given (default %(default)s)")
    command.add_argument("--seed", type=_count, default=train_defaults.seed, help="seed of weights, shuffling and augmentation (default %(default)s)")
    command.add_argument("--backend", choices=BACKENDS, default=train_defaults.backend, help=BACKEND_HELP)
    command.add_argument("--trainer", choices=TRAINERS, default=train_defaults.trainer, help="how epochs run: auto (img2num's compiled loop on JAX with data in memory; on PyTorch, Keras' fit on a channels-first copy of a convolutional model; else Keras' fit), scan, step, fit or fit_channels_first; all give the same numbers (default %(default)s)")
    command.add_argument("--run", type=Path, help="run folder (default: runs/MODEL, or runs/MODEL-2, ... if taken)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing run folder once the new run is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    command.add_argument("--no-pictures", action="store_true", help="draw no pictures (every other file of the run folder is written)")
    add_data_options(command)
    command.set_defaults(command=_train)

    command = commands.add_parser(
        "evaluate", help="score a run on labelled data",
        description="Print MSE, RMSE, MAE and R^2 of a run on labelled data and save them as JSON. "
        "Image files are decoded as the run's training images were.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, help="labelled data: a label CSV naming image files (or a folder holding one), or an .npz file")
    command.add_argument("--output", type=Path, help="JSON file for the metrics; - prints the JSON to stdout instead (default: RUN/evaluations/DATA.json, or DATA-2.json, ... when that holds an evaluation of other data)")
    command.add_argument("--overwrite", action="store_true", help="replace an output file that holds anything but an earlier evaluation of the same data")
    command.add_argument("--interval", metavar="LEVEL", type=_level, help="also score prediction intervals at this level, such as 0.9: coverage and mean width")
    add_data_options(command, training=False)
    command.set_defaults(command=_evaluate)

    command = commands.add_parser(
        "predict", help="predict with a run",
        description="Predict one number per image. Image files and folders (searched recursively for "
        "image files, sorted) give path,prediction rows; a label CSV gives path,prediction(,label); "
        "an .npz file gives index,prediction(,label). A bad image file is reported and skipped; "
        "every good prediction is still written (exit status 1).",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, nargs="+", help="image files and folders, a label CSV, or one .npz file with images in x (labels in y optional)")
    command.add_argument("--output", type=Path, help="CSV file to write; - is stdout (default: print to stdout)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    command.add_argument("--interval", metavar="LEVEL", type=_level, help="add lower,upper columns: a prediction interval at this level, such as 0.9, from the run's calibration")
    add_data_options(command, training=False, skip_bad=False)
    command.set_defaults(command=_predict)

    serve = ServeConfig()
    command = commands.add_parser(
        "serve", help="serve a run over HTTP: a JSON API and a web page",
        description="Serve a run over HTTP until Ctrl-C: POST /predict (image files as a multipart form, or one "
        "image as the body) answers one prediction per image, as `img2num predict` would; GET /info, GET /health, "
        "the web page at / and the API documentation at /docs. Concurrent requests are batched into one model call.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("--host", default=serve.host, help="address to listen on; 0.0.0.0 opens it to other machines (default %(default)s: this machine only)")
    command.add_argument("--port", type=_count, default=serve.port, help="TCP port; 0 takes a free one (default %(default)s)")
    command.add_argument("--max-upload-mb", metavar="MB", type=_positive_float, default=serve.max_upload_mb, help="largest request body in MB, answered 413 beyond (default %(default)s)")
    command.add_argument("--max-pixels", metavar="N", type=_positive_int, default=serve.max_pixels, help="largest image in pixels (height x width) decoded (default %(default)s)")
    command.add_argument("--max-images", metavar="N", type=_positive_int, default=serve.max_images, help="most images in one request (default %(default)s)")
    command.add_argument("--max-batch", metavar="N", type=_positive_int, default=serve.max_batch, help="most images in one model call (default %(default)s)")
    command.add_argument("--batch-wait-ms", metavar="MS", type=_non_negative_float, default=serve.batch_wait_ms, help="how long an image waits for others to share its model call (default %(default)s)")
    command.add_argument("--queue-size", metavar="N", type=_positive_int, default=serve.queue_size, help="most images waiting for the model; requests beyond are answered 503 (default %(default)s)")
    command.add_argument("--max-connections", metavar="N", type=_positive_int, default=serve.max_connections, help="most connections served at once; more are answered 503 (default %(default)s)")
    command.add_argument("--units", metavar="TEXT", help="what the number is measured in, given in every answer, such as 'ug/m3' (default: none)")
    command.set_defaults(command=_serve)

    command = commands.add_parser(
        "explain", help="explain a run's predictions: image beside its attribution map",
        description="Write, per image, a picture of the image beside its signed integrated-gradient "
        "attribution map (red pushes the number up, blue pulls it down; a black image is the baseline), "
        "and explanations.csv with each prediction and how far the attributions' sum is from "
        "prediction - baseline prediction.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("images", type=Path, nargs="+", help="image files and folders, or one .npz file with images in x")
    command.add_argument("--out", type=Path, required=True, help="folder to create for the pictures")
    command.add_argument("--limit", type=_positive_int, default=10, help="explain at most this many images (default %(default)s)")
    command.add_argument("--steps", type=_positive_int, default=64, help="path points of the integrated gradients (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing folder once the new one is complete")
    command.set_defaults(command=_explain)

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
    command.add_argument("--models", type=_model_list, help="comma-separated model names, such as mlp,cnn; auto is the automatic choice (default: every registered model)")
    command.add_argument("--epochs", type=_positive_int, help=f"epochs per model (default {train_defaults.epochs})")
    command.add_argument("--seeds", type=_positive_int, default=1, help="train every model on this many seeds, SEED, SEED+1, ...; report mean and spread (default %(default)s)")
    command.add_argument("--seed", type=_count, default=0, help="first training seed, also the seed of held-out shares (default %(default)s)")
    command.add_argument("--val-fraction", type=_fraction, default=train_defaults.val_fraction, help="share held out for validation when none is given (default %(default)s)")
    command.add_argument("--reference-mse", type=_positive_float, help="best possible test MSE of the task (default: from the data folder's task.json)")
    command.add_argument("--backend", choices=BACKENDS, default=train_defaults.backend, help=BACKEND_HELP)
    command.add_argument("--time-limit", metavar="SECONDS", type=_positive_float, help="most seconds the whole comparison takes, shared equally by the models and seeds still to train (default: none; auto among the models takes its own default)")
    command.add_argument("--no-runs", action="store_true", help="do not keep each trained run folder in OUT/runs")
    command.add_argument("--out", type=Path, default=Path("results/compare"), help="results folder (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing results folder once the new one is complete")
    command.add_argument("--quiet", action="store_true", help="print no progress")
    add_data_options(command, test_fraction=0.2)
    command.set_defaults(command=_compare)

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
    command.add_argument("--data", type=Path, help="compare the models on this data (a label CSV naming image files, a folder holding one, an .npz file or a folder from `img2num generate`) instead of generating the points data")
    add_data_options(command, channels=False)
    command.set_defaults(command=_recipe)
    return parser


def add_data_options(
    parser: argparse.ArgumentParser,
    training: bool = True,
    channels: bool = True,
    skip_bad: bool = True,
    test_fraction: float = 0.0,
) -> None:
    """Add the options of `DataConfig` (how label CSVs and image files are read) to a command.

    Args:
        parser: The command's parser.
        training: Also add the options that shape training data (split column, channels, image
            size, resize mode, test share, in-memory limit); commands that use a trained run
            decode images as it was trained.
        channels: Add --channels (off where the command already has a --channels of its own).
        skip_bad: Add --skip-bad (off where bad files are always skipped and reported).
        test_fraction: Default of --test-fraction.
    """
    group = parser.add_argument_group("image files and label CSVs")
    names = ["path_column", "label_column", "workers"]
    group.add_argument("--path-column", metavar="NAME", help="CSV column naming each image, relative to the CSV (default: file, else path)")
    group.add_argument("--label-column", metavar="NAME", help="CSV column holding each image's number (default: label, else value)")
    if skip_bad:
        names.append("skip_bad")
        group.add_argument("--skip-bad", action="store_true", help="skip bad rows and images (counted, listed, one summary line) instead of stopping")
    group.add_argument("--workers", metavar="N", type=_positive_int, help="processes decoding images (default: every CPU core)")
    if training:
        names += ["split_column", "image_size", "resize", "test_fraction", "cache_mb"] + (["channels"] if channels else [])
        group.add_argument("--split-column", metavar="NAME", default=DataConfig.split_column, help="optional CSV column of train/val/test (default %(default)s)")
        if channels:
            group.add_argument("--channels", type=int, choices=(1, 3), help="1 (grayscale) or 3 (colour) (default: what the data is)")
        group.add_argument("--image-size", metavar="HxW", type=_image_size, help="bring every image to HxW, such as 64x64 (default: images must share one size)")
        group.add_argument("--resize", choices=RESIZE_MODES, help="with --image-size, how to change an aspect ratio: stretch, or crop (centre crop, then resize) (default: refuse)")
        group.add_argument("--test-fraction", metavar="SHARE", type=_test_fraction, default=test_fraction, help="share of a CSV without split column held out for testing (default %(default)s)")
        group.add_argument("--cache-mb", metavar="MB", type=_non_negative_float, default=CACHE_MB, help="decoded images up to this many MB are kept in memory, larger data streams from disk; 0 always streams (default %(default)s)")
    parser.set_defaults(data_options=names)


def data_config(args: argparse.Namespace) -> DataConfig:
    """The `DataConfig` of parsed options added by `add_data_options` (defaults for the rest)."""
    names = getattr(args, "data_options", [])
    return DataConfig(**{name: getattr(args, name) for name in names if getattr(args, name) is not None})


def _generate(args) -> None:
    from img2num.data import (
        generate_dust_splits,
        generate_points_splits,
        task_info,
        write_dust,
        write_image_folder,
        write_points,
    )

    if args.task == "dust":
        config, draw, write = _dust_config(args), generate_dust_splits, write_dust
    else:
        if args.cell is not None or args.noise is not None:
            raise Img2NumError("--cell and --noise belong to --task dust")
        config, draw, write = _points_config(args), generate_points_splits, write_points
    if args.format == "images":
        paths = write_image_folder(args.out, draw(config), overwrite=args.overwrite, task=task_info(config))
    else:
        paths = write(args.out, config, overwrite=args.overwrite)
    for split, path in paths.items():
        print(f"{split}: {path}")


def _models(args) -> None:
    from img2num.autoselect import list_candidates
    from img2num.models import list_models
    from img2num.registry import list_families

    lines = {spec.name: spec.description for spec in list_models() + list_families()}
    names = ", ".join(candidate.name for candidate in list_candidates())
    lines["auto"] = f"the default of `train`: the best of {names} on validation data, within --time-limit"
    width = max(len(name) for name in lines)
    for name, text in lines.items():
        print(f"{name:<{width}}  {text}")


def _train(args) -> None:
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
        from img2num.autoselect import selection_lines

        print("\n".join(selection_lines(run.config["selection"])))
    for split, metrics in run.metrics.items():
        print(f"[{split}]\n{format_metrics(metrics)}")
    data = run.config["data"]
    if data.get("rows_skipped"):
        _note(f"skipped {data['rows_skipped']} of {data['rows_read']} rows; listed in {run.path / 'skipped.csv'}")
    print(f"run saved in {run.path}")


def _evaluate(args) -> None:
    from img2num.evaluation import evaluation_file, evaluation_record, save_evaluation
    from img2num.metrics import format_metrics
    from img2num.io import json_text

    record = evaluation_record(args.run, args.data, options=data_config(args), interval=args.interval)
    if _is_stdout(args.output):
        sys.stdout.write(json_text(record))
        return
    # Printed before saving: a result the output file refuses is still seen.
    print(format_metrics(record))
    output = args.output or evaluation_file(args.run, record["data"])
    save_evaluation(output, record, args.overwrite)
    skipped = record.get("skipped", [])
    if skipped:
        _note(f"skipped {len(skipped)} bad row{'s' if len(skipped) != 1 else ''}; listed in {output}")
    print(f"metrics saved in {output}")


def _predict(args) -> int:
    from dataclasses import replace

    from img2num.bundle import load_run
    from img2num.data import load_dataset, read_image_table
    from img2num.io import check_replaceable_file
    from img2num.prediction import predict_files, predictions_csv, write_predictions

    if _is_stdout(args.output):
        args.output = None
    if args.output is not None:
        check_replaceable_file(args.output, args.overwrite)
    kinds = {path.suffix.lower() for path in args.data}
    if ".npz" in kinds or ".csv" in kinds:
        if len(args.data) > 1:
            raise Img2NumError(f"{args.data[0]}: an .npz or CSV file is predicted on alone, not with other inputs")
    run = load_run(args.run)
    if args.interval is not None:
        run.interval([], args.interval)  # a run without calibration fails before any image is read
    paths, labels, bad = None, None, []
    if ".npz" in kinds:
        data = load_dataset(args.data[0])
        predictions, labels = run.predict(data.x, data.source), data.y
    elif ".csv" in kinds:
        options = replace(data_config(args), skip_bad=True)
        table = read_image_table(args.data[0], options, run.preprocessing.image_spec(), require_labels=False)
        predictions, labels, paths, bad = run.predict_data(table.data), table.data.y, list(table.data.paths), table.skipped
    else:
        paths, predictions, bad = predict_files(run, args.data, workers=args.workers)
    bounds = None if args.interval is None else run.interval(predictions, args.interval)[1:]
    text = predictions_csv(predictions, labels, paths, bounds)
    if args.output is None:
        sys.stdout.write(text)
    elif len(predictions):
        write_predictions(args.output, predictions, labels, overwrite=args.overwrite, paths=paths, bounds=bounds)
        print(f"{len(predictions)} predictions written to {args.output}")
    _report_bad(bad)
    if bad and (len(predictions) or len(bad) > 1):
        return _fail(f"{len(bad)} of {len(bad) + len(predictions)} images could not be used; "
                     f"{len(predictions)} predictions {'written' if len(predictions) else 'made'}")
    return 1 if bad else 0


def _report_bad(bad, shown: int = BAD_LINES_SHOWN) -> None:
    """One line per bad file or row, the first `shown` of them; the rest summed up in one line
    by kind (the reason with its numbers left out), most frequent first."""
    import re
    from collections import Counter

    for row in bad[:shown]:
        _fail(row.message)
    rest = Counter(re.sub(r"\d+", "N", row.reason) for row in bad[shown:])
    if rest:
        kinds = "; ".join(f"{count} x {kind}" for kind, count in rest.most_common(3))
        others = sum(rest.values()) - sum(count for _, count in rest.most_common(3))
        _fail(f"and {sum(rest.values())} more not listed: {kinds}" + (f"; {others} others" if others else ""))


def _serve(args) -> None:
    from img2num.serve import serve

    names = (
        "host", "port", "max_upload_mb", "max_pixels", "max_images", "max_batch", "batch_wait_ms", "queue_size",
        "max_connections", "units",
    )
    with interrupts.as_keyboard_interrupt():
        serve(args.run, ServeConfig(**{name: getattr(args, name) for name in names}))


def _explain(args) -> None:
    from img2num.explain import explain_images

    folder = explain_images(args.run, args.images, args.out, steps=args.steps, limit=args.limit, overwrite=args.overwrite)
    count = sum(1 for path in folder.glob("*.png"))
    print(f"{count} explained images in {folder} (one PNG each, explanations.csv)")


def _compare(args) -> None:
    from img2num.comparison import compare

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
    )
    width = max(len(row["name"]) for row in summary["leaderboard"])
    for row in summary["leaderboard"]:
        spread = f" ± {row['test_mse_sd']:.4g}" if row["seeds"] > 1 else ""
        ratio = "" if row["mse_over_reference"] is None else f"  ({row['mse_over_reference']:.3f}x best possible)"
        print(f"{row['name']:<{width}}  test MSE {row['test_mse']:.4g}{spread}{ratio}")
    print(f"best: {summary['best']}")
    print(f"results in {summary['folder']} (report.html, report.md, leaderboard.md, results.json)")


def _recipe(args) -> None:
    from img2num.metrics import r2_text
    from img2num.recipe import run_recipe

    summary = run_recipe(
        args.out,
        _points_config(args),
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


def _train_config(args) -> TrainConfig:
    given = {
        name: getattr(args, name)
        for name in (
            "model", "epochs", "batch_size", "learning_rate", "seed", "val_fraction", "patience",
            "restore_best", "lr_patience", "standardize_targets", "weight_decay", "augment", "trainer", "backend",
            "time_limit", "finetune_stages",
        )
        if getattr(args, name, None) is not None
    }
    return TrainConfig.plain(**given) if args.plain else TrainConfig(**given)


def _points_config(args) -> PointsConfig:
    defaults = PointsConfig()
    return PointsConfig(
        height=args.height or defaults.height,
        width=args.width or defaults.width,
        channels=args.channels or defaults.channels,
        train=args.train_size,
        val=args.val_size,
        test=args.test_size,
        seed=args.data_seed,
    )


def _dust_config(args) -> DustConfig:
    if args.channels not in (None, 3):
        raise Img2NumError(f"the dust task is RGB (3 channels); got --channels {args.channels}")
    defaults = DustConfig()
    return DustConfig(
        height=args.height or defaults.height,
        width=args.width or defaults.width,
        cell=args.cell or defaults.cell,
        noise=defaults.noise if args.noise is None else args.noise,
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


def _is_stdout(output: Path | None) -> bool:
    """`--output -`: standard output, as for most Unix tools."""
    return output is not None and str(output) == "-"


def _fail(message: str, status: int = 1) -> int:
    print(f"img2num: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def _note(message: str) -> None:
    print(f"img2num: {' '.join(message.split())}", file=sys.stderr)


@contextlib.contextmanager
def _without_pyplot():
    """Make `import matplotlib.pyplot` fail while a command runs.

    Keras imports pyplot when it can, for a plotting helper img2num never calls: 0.3-0.7 s of
    every command's start-up (docs/speed.md). img2num draws with matplotlib's `Figure` alone.
    """
    blocked = "matplotlib.pyplot" not in sys.modules
    if blocked:
        sys.modules["matplotlib.pyplot"] = None
    try:
        yield
    finally:
        if blocked and sys.modules.get("matplotlib.pyplot", False) is None:
            del sys.modules["matplotlib.pyplot"]


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, Img2NumWarning):
        _note(f"warning: {message}")
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


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


def _level(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 < v < 1, "a level between 0 and 1 (exclusive), such as 0.9")


def _dust_noise(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 <= v <= 0.1, "a number from 0 to 0.1")


def _model_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated model names such as mlp,cnn, got {text!r}")
    return names


def _test_fraction(text: str) -> float:
    return _parse_number(float, text, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 64x64, got {text!r}")
    return size
