"""Ctrl-C (SIGINT): the command line ends at once with one line and exit status 130, leaving no
temporary file or folder behind, and a replacement of a finished run is never left half done.

Python's own handling raises `KeyboardInterrupt` wherever the program happens to be. Raised
inside a finalizer or a callback from C (which happens while matplotlib draws), it is printed
as "Exception ignored" and lost, and the job runs on to replace the old run; unwinding while
Keras' backend threads still run can crash the interpreter at exit. So the command line handles
the signal itself: it removes the temporary paths registered here and ends the process directly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

# Tests name a phase here to make the process interrupt itself there (see `checkpoint`).
TEST_HOOK = "IMG2NUM_TEST_INTERRUPT"

_temporary: set[str] = set()


@contextlib.contextmanager
def temporary(path: str | Path) -> Iterator[None]:
    """Register `path` (a temporary file or folder) for removal if the process is interrupted."""
    _temporary.add(str(path))
    try:
        yield
    finally:
        _temporary.discard(str(path))


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then act on it as the handler in place would have.

    For steps that must not be cut in two, such as the two renames that put a new run in place
    of an old one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(signal.SIGINT, held[0])
        elif held and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def exit_on_interrupt(message: str, status: int = 130) -> Iterator[None]:
    """While the block runs, Ctrl-C writes `message` to stderr, removes every registered
    temporary path and ends the process with `status` at once (no exception unwinds).

    A process started with Ctrl-C ignored (a background job of a script, `nohup`) keeps
    ignoring it, as Python itself does.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return

    def stop(signum, frame) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        # Decoding workers would wait for their parent for ever.
        processes = sys.modules.get("multiprocessing")
        for child in processes.active_children() if processes else ():
            with contextlib.suppress(Exception):
                child.kill()
        for path in sorted(_temporary, key=len, reverse=True):
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.write(2, (message + "\n").encode())
        os._exit(status)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def as_keyboard_interrupt() -> Iterator[None]:
    """While the block runs, Ctrl-C raises `KeyboardInterrupt` as Python's own handler does: for
    a command whose normal end is Ctrl-C (`serve`), which stops cleanly and exits with 0."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_process(status: int, message: str, interrupted_status: int = 130) -> None:
    """End the process with `status` after Python's exit handlers (`atexit`) have run, with
    Ctrl-C handled as in `exit_on_interrupt` until the very end.

    Python's own exit runs the handlers with Ctrl-C raising `KeyboardInterrupt` (printed as
    "Exception ignored in atexit callback", exit status 0), then restores the system's default,
    which ends the process without a word (status -2). Here the handlers run under `message` and
    `interrupted_status`, and the process ends directly after them. Never returns.
    """
    with exit_on_interrupt(message, interrupted_status):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        # Threads the program left running are waited for, as Python's own exit does.
        getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


def checkpoint(phase: str) -> None:
    """Interrupt this process at `phase` when the environment variable `TEST_HOOK` names it:
    tests send Ctrl-C at a known point of a job this way."""
    if os.environ.get(TEST_HOOK) == phase:
        os.kill(os.getpid(), signal.SIGINT)
