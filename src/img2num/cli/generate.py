"""`img2num generate`: write a synthetic data set (points or dust)."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2num.cli.arguments import dust_noise, points_config, positive_int, synthetic_data_options
from img2num.config import DustConfig
from img2num.errors import Img2NumError

# Kept here rather than imported from img2num.data, which loads numpy; `--help` stays instant.
TASK_CHOICES = ("points", "dust")


def add_generate_parser(commands) -> None:
    """Add the `generate` command to `commands` (the subparsers of the main parser)."""
    dust = DustConfig()
    command = commands.add_parser(
        "generate", parents=[synthetic_data_options()], help="write a synthetic data set (points or dust) as .npz files or PNG files",
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
    group.add_argument("--cell", type=positive_int, help=f"side of a dust cell in pixels (default {dust.cell})")
    group.add_argument("--noise", type=dust_noise, help=f"pixel noise, 0 to 0.1; the reference is exact up to 0.02 (default {dust.noise})")
    command.set_defaults(command=run_generate)


def run_generate(args: argparse.Namespace) -> None:
    """Write the data set and print each split's file."""
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
        config, draw, write = points_config(args), generate_points_splits, write_points
    if args.format == "images":
        paths = write_image_folder(args.out, draw(config), overwrite=args.overwrite, task=task_info(config))
    else:
        paths = write(args.out, config, overwrite=args.overwrite)
    for split, path in paths.items():
        print(f"{split}: {path}")


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
