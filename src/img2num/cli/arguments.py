"""What several commands parse alike: the one-line-error parser, argument types, the options of
image files and label CSVs, and the synthetic data options."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2num.config import CACHE_MB, RESIZE_MODES, DataConfig, DustConfig, PointsConfig, parse_gap
from img2num.errors import Img2NumError

BACKEND_HELP = (
    "Keras backend: auto (KERAS_BACKEND when set, else the faster one for the model and image size), "
    "jax, torch or tensorflow (default %(default)s)"
)


class Parser(argparse.ArgumentParser):
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


def positive_int(text: str) -> int:
    """Argument type: a whole number of at least 1."""
    return _parse_number(int, text, lambda v: v >= 1, "a whole number of at least 1")


def count(text: str) -> int:
    """Argument type: a whole number of at least 0."""
    return _parse_number(int, text, lambda v: v >= 0, "a whole number of at least 0")


def positive_float(text: str) -> float:
    """Argument type: a finite number above 0."""
    return _parse_number(float, text, lambda v: 0 < v < float("inf"), "a positive number")


def non_negative_float(text: str) -> float:
    """Argument type: a finite number of at least 0."""
    return _parse_number(float, text, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def video_time(text: str) -> float:
    """Argument type of video times: seconds (12.5), MM:SS or HH:MM:SS.fff."""
    from img2num.data.video import parse_frame_time

    seconds = parse_frame_time(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"expected seconds (12.5), MM:SS or HH:MM:SS.fff, got {text!r}")
    return seconds


def fraction(text: str) -> float:
    """Argument type: a share strictly between 0 and 1."""
    return _parse_number(float, text, lambda v: 0 < v < 1, "a number between 0 and 1")


def level(text: str) -> float:
    """Argument type: an interval level strictly between 0 and 1."""
    return _parse_number(float, text, lambda v: 0 < v < 1, "a level between 0 and 1 (exclusive), such as 0.9")


def dust_noise(text: str) -> float:
    """Argument type: the dust task's pixel noise, 0 to 0.1."""
    return _parse_number(float, text, lambda v: 0 <= v <= 0.1, "a number from 0 to 0.1")


def band_list(text: str) -> tuple[int, ...]:
    """Argument type: comma-separated band numbers from 1, each once, such as 4,3,2."""
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        bands = ()
    if not bands or min(bands) < 1 or len(set(bands)) != len(bands):
        raise argparse.ArgumentTypeError(f"expected band numbers from 1, each once, separated by commas, such as 4,3,2, got {text!r}")
    return bands


def model_list(text: str) -> list[str]:
    """Argument type: comma-separated model names, none empty."""
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


def _gap(text: str) -> float | str:
    try:
        amount, with_unit = parse_gap(text)
    except Img2NumError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip() if with_unit else amount


def is_stdout(output: Path | None) -> bool:
    """`--output -`: standard output, as for most Unix tools."""
    return output is not None and str(output) == "-"


def add_data_options(
    parser: argparse.ArgumentParser,
    training: bool = True,
    channels: bool = True,
    skip_bad: bool = True,
    test_fraction: float = 0.0,
    groups: bool = True,
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
        groups: Add --group-column (off where a command has no use for groups).
    """
    group = parser.add_argument_group("image files and label CSVs")
    names = ["path_column", "label_column", "workers"]
    group.add_argument("--path-column", metavar="NAME", help="CSV column naming each image, relative to the CSV (default: file, else path)")
    group.add_argument("--label-column", metavar="NAME", help="CSV column holding each image's number (default: label, else value)")
    if skip_bad:
        names.append("skip_bad")
        group.add_argument("--skip-bad", action="store_true", help="skip bad rows and images (counted, listed, one summary line) instead of stopping")
    group.add_argument("--workers", metavar="N", type=positive_int, help="processes decoding images (default: every CPU core)")
    names.append("frame_column")
    group.add_argument("--frame-column", metavar="NAME", help="CSV column of the frame's time (seconds, MM:SS or HH:MM:SS.fff) on rows whose file is a video (default: time; docs/video.md)")
    if groups:
        names.append("group_column")
        group.add_argument("--group-column", metavar="NAME", help="CSV column naming each image's group (a camera, a site, a source photo): whole groups go to training, validation or test (docs/groups.md)")
    names.append("raster")
    group.add_argument("--raster", metavar="FILE", help="the GeoTIFF of a label CSV of map points (x,y,label) without a file column (docs/rasters.md)")
    if training:
        names += ["tile", "bands"]
        group.add_argument("--tile", metavar="N", type=positive_int, help="with map points: the N x N chip around each point is its image (docs/rasters.md)")
        group.add_argument("--bands", metavar="LIST", type=band_list, help="keep these bands of GeoTIFF chips and multi-band TIFF files, numbered from 1, such as 4,3,2 (default: every band)")
        names += ["split_column", "image_size", "resize", "test_fraction", "cache_mb"] + (["channels"] if channels else [])
        group.add_argument("--split-column", metavar="NAME", default=DataConfig.split_column, help="optional CSV column of train/val/test (default %(default)s)")
        if channels:
            group.add_argument("--channels", type=int, choices=(1, 3), help="1 (grayscale) or 3 (colour) (default: what the data is)")
        group.add_argument("--image-size", metavar="HxW", type=_image_size, help="bring every image to HxW, such as 64x64 (default: images must share one size)")
        group.add_argument("--resize", choices=RESIZE_MODES, help="with --image-size, how to change an aspect ratio: stretch, or crop (centre crop, then resize) (default: refuse)")
        group.add_argument("--test-fraction", metavar="SHARE", type=_test_fraction, default=test_fraction, help="share of a CSV without split column held out for testing (default %(default)s)")
        names += ["time_column", "gap"]
        group.add_argument("--time-column", metavar="NAME", help="CSV column of each image's time (ISO dates, date-times or numbers): validation and test are the latest in time (docs/groups.md)")
        group.add_argument("--gap", metavar="GAP", type=_gap, help="with --time-column, drop training rows this close before validation (and validation rows before test): a number in the column's units, or for dates seconds or 30s, 15min, 6h, 2d")
        group.add_argument("--cache-mb", metavar="MB", type=non_negative_float, default=CACHE_MB, help="decoded images up to this many MB are kept in memory, larger data streams from disk; 0 always streams (default %(default)s)")
    parser.set_defaults(data_options=names)


def data_config(args: argparse.Namespace) -> DataConfig:
    """The `DataConfig` of parsed options added by `add_data_options` (defaults for the rest)."""
    names = getattr(args, "data_options", [])
    return DataConfig(**{name: getattr(args, name) for name in names if getattr(args, name) is not None})


def synthetic_data_options() -> argparse.ArgumentParser:
    """A parent parser with the options of generated data: image size, split sizes, seed.

    Sizes default to None so that each task can have its own (points 16x16x1, dust 64x64x3).
    """
    points = Parser(add_help=False)
    group = points.add_argument_group("synthetic data")
    defaults = PointsConfig()
    dust = DustConfig()
    group.add_argument("--height", type=positive_int, help=f"image height (default {defaults.height}; dust task {dust.height})")
    group.add_argument("--width", type=positive_int, help=f"image width (default {defaults.width}; dust task {dust.width})")
    group.add_argument("--channels", type=positive_int, help=f"image channels (default {defaults.channels}; the dust task is RGB)")
    group.add_argument("--train-size", type=count, default=defaults.train, help="training samples (default %(default)s)")
    group.add_argument("--val-size", type=count, default=defaults.val, help="validation samples (default %(default)s)")
    group.add_argument("--test-size", type=count, default=defaults.test, help="test samples (default %(default)s)")
    group.add_argument("--data-seed", type=count, default=defaults.seed, help="seed of the data (default %(default)s)")
    return points


def points_config(args: argparse.Namespace) -> PointsConfig:
    """The `PointsConfig` of parsed `synthetic_data_options` (a size not given takes its default)."""
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


# What can run a run's model (`img2num.engines`), named here so that parsing imports no engine.
ENGINES = ("keras", "onnx")


def add_engine_option(command, ray: bool = False) -> None:
    """Add `--engine`: what runs the model when `command` predicts (with `ray`, Ray Data too)."""
    command.add_argument(
        "--engine", choices=ENGINES + (("ray",) if ray else ()), default="keras",
        help="what runs the model: keras, or onnx for ONNX Runtime on the run's graph, exported into the run "
        "folder (model.onnx) on first use; needs pip install 'img2num[onnx]'"
        + ("; ray: Ray Data actors on a Ray cluster, --workers of them, reading local or cloud paths (docs/scale.md)" if ray else "")
        + " (default %(default)s)",
    )
