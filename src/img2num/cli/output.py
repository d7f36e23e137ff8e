"""What commands tell the user on stderr besides their results: one-line errors, notes and
img2num's warnings."""

from __future__ import annotations

import sys
import warnings

from img2num.errors import Img2NumWarning


def fail(message: str, status: int = 1) -> int:
    """Print `message` as one `img2num: error:` line on stderr.

    Args:
        message: The error; its line breaks and runs of spaces become single spaces.
        status: The exit status to return.

    Returns:
        `status`, for a command to return.
    """
    print(f"img2num: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def note(message: str) -> None:
    """Print `message` as one `img2num:` line on stderr."""
    print(f"img2num: {' '.join(message.split())}", file=sys.stderr)


_python_show_warning = warnings.showwarning


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A `warnings.showwarning` that prints img2num's warnings as one note line each."""
    if issubclass(category, Img2NumWarning):
        note(f"warning: {message}")
    else:
        _python_show_warning(message, category, filename, lineno, file, line)
