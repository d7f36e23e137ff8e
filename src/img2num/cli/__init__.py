"""The command line: parse options, build the configuration, call one public function.

Heavy libraries load only inside the commands that need them, so `--help` and `models` answer
at once.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from img2num import interrupts
from img2num.cli.arguments import Parser
from img2num.cli.compare import add_compare_parser, add_recipe_parser
from img2num.cli.export import add_export_parser
from img2num.cli.generate import add_generate_parser
from img2num.cli.output import fail, show_warning
from img2num.cli.runs import add_evaluate_parser, add_explain_parser, add_predict_parser, add_serve_parser
from img2num.cli.train import add_models_parser, add_train_parser
from img2num.errors import Img2NumError
from img2num.startup import __version__

INTERRUPTED = "interrupted; nothing unfinished was left in place"


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
            warnings.showwarning = show_warning
            return args.command(args) or 0
    except Img2NumError as error:
        return fail(str(error))
    except OSError as error:
        # Files the user named that cannot be written or read: a user problem, not a bug.
        return fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
    except KeyboardInterrupt:
        return fail(INTERRUPTED, status=130)


def entry() -> None:
    """The `img2num` program: `main`, then an exit on which Ctrl-C still gives the one line and
    status 130 (`interrupts.exit_process`), however late it comes."""
    try:
        status = main()
    except SystemExit as stop:  # argparse's --help (0) and bad command lines (2)
        if not isinstance(stop.code, (int, type(None))):
            raise
        status = stop.code or 0
    interrupts.exit_process(status, f"img2num: error: {INTERRUPTED}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = Parser(prog="img2num", description="Predict a number from an image: train, compare, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"img2num {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    # In the order `img2num --help` lists them.
    for add_parser in (
        add_generate_parser,
        add_models_parser,
        add_train_parser,
        add_evaluate_parser,
        add_predict_parser,
        add_serve_parser,
        add_export_parser,
        add_explain_parser,
        add_compare_parser,
        add_recipe_parser,
    ):
        add_parser(commands)
    return parser


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
