"""The `export` command: a run as one ONNX graph from pixels to the number, with its JSON record."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_export_parser(commands) -> None:
    """Add the `export` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser(
        "export", help="export a run as an ONNX graph that runs without img2num",
        description="Write one ONNX graph that takes the pixels `img2num predict` takes for the run (N, H, W, C at "
        "the run's size and pixel type) and gives the number in the labels' units (the input scaling, the model "
        "and the target un-scaling inside), and a JSON record beside it (the same name, .json): input size, "
        "resize rule, channels, pixel type, target, img2num version and run. Needs pip install 'img2num[onnx]'.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("--format", choices=("onnx",), default="onnx", help="file format (default %(default)s)")
    command.add_argument("--output", type=Path, required=True, help="the file to write, such as model.onnx")
    command.add_argument("--overwrite", action="store_true", help="replace an existing file and its JSON record")
    command.set_defaults(command=run_export)


def run_export(args: argparse.Namespace) -> None:
    """Export the run and say where."""
    from img2num.exporting import export

    path = export(args.run, args.output, format=args.format, overwrite=args.overwrite)
    print(f"ONNX graph written to {path} (record: {path.with_suffix('.json')})")
