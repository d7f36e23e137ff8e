"""Which Keras backend trains: the user's choice, or the faster one for the model and images.

Keras reads its backend once, when it is first imported, so the choice is made before that
(`select_backend`). The rule for "auto" comes from `benchmarks/speed.py` on CPUs: img2num's
compiled loop on JAX is fastest for small models and images (it removes the per-step overhead
that dominates them), and Keras on PyTorch, whose oneDNN convolutions are about twice as fast
as XLA's on the CPU, for convolutional models with enough work per image; each registered
model states from which image area that holds (`ModelSpec.torch_from_pixels`).

Every process starts Keras through `start_keras`, training and `load_run` alike: on JAX it keeps
compiled programs in a persistent cache folder (`compilation_cache_folder`), so that a second run
of the same model and shapes loads them instead of compiling again, and puts img2num's faster
forms of Keras' JAX functions in place (`img2num.jax_ops`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from img2num import jax_ops, startup
from img2num.config import BACKENDS
from img2num.errors import Img2NumError
from img2num.registry import ModelSpec

# The backend when nothing else decides.
DEFAULT_BACKEND = "jax"
# The backends a process can run on; each needs the Python package of its name.
_RUNNABLE = tuple(name for name in BACKENDS if name != "auto")
# Where JAX's compiled programs are kept: a folder, or one of _OFF to keep none.
CACHE_VARIABLE = "IMG2NUM_JAX_CACHE"
_OFF = ("", "0", "off", "no", "false")


def user_backend() -> str | None:
    """The backend the user named in KERAS_BACKEND before img2num set its default, if any."""
    return startup.USER_KERAS_BACKEND


def loaded_backend() -> str | None:
    """The backend Keras runs on, or None while Keras is not imported yet."""
    if "keras" not in sys.modules:
        return None
    return sys.modules["keras"].backend.backend()


def preferred_backend(models: Sequence[ModelSpec], image_shape: Sequence[int]) -> str:
    """The faster backend by the rule of the module docstring: "torch" when any of `models` (the
    registry's entries) trains faster there on images of `image_shape` (and PyTorch is
    installed), else "jax"."""
    if any(spec.prefers_torch(image_shape) for spec in models) and _installed("torch"):
        return "torch"
    return DEFAULT_BACKEND


def choose_backend(requested: str, models: Sequence[ModelSpec], image_shape: Sequence[int]) -> str:
    """The backend to train on: an explicit request; for "auto", KERAS_BACKEND when the user set
    it, Keras' backend when Keras is already imported, else `preferred_backend`.

    Raises:
        Img2NumError: The name is unknown.
    """
    if requested not in BACKENDS:
        raise Img2NumError(f"unknown backend {requested!r}; known: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    return user_backend() or loaded_backend() or preferred_backend(models, image_shape)


def select_backend(name: str):
    """Make Keras run on `name`: set KERAS_BACKEND and start Keras (`start_keras`).

    Returns:
        The `keras` module.

    Raises:
        Img2NumError: The backend's package is not installed, or Keras already runs on another
            backend in this process.
    """
    if name not in _RUNNABLE:
        raise Img2NumError(f"unknown backend {name!r}; known: {', '.join(_RUNNABLE)}")
    if not _installed(name):
        extra = " (pip install 'img2num[bench]')" if name == "tensorflow" else ""
        raise Img2NumError(f"the {name} backend is not installed: no Python package {name!r}{extra}")
    loaded = loaded_backend()
    if loaded is not None and loaded != name:
        raise Img2NumError(
            f"Keras already runs on {loaded} in this process; set KERAS_BACKEND={name} before importing Keras"
        )
    os.environ["KERAS_BACKEND"] = name
    # Keras reads KERAS_BACKEND once, when imported: importing it now fixes the choice, so that
    # a later "auto" in this process (each model `compare` trains) keeps it.
    return start_keras()


def start_keras():
    """Start Keras on the backend KERAS_BACKEND names (or the one it runs on already): the JAX
    compilation cache first, then Keras, then img2num's JAX forms (`img2num.jax_ops`), each once
    per process. Training (through `select_backend`) and `load_run` both start here.

    Returns:
        The `keras` module.
    """
    enable_compilation_cache()
    keras = import_keras()
    jax_ops.use_numpy_uniform()
    jax_ops.use_fast_depthwise()
    return keras


def import_keras():
    """Import Keras (once per process) without the scikit-learn it would load for its
    scikit-learn wrappers, which img2num does not use: where scikit-learn is installed (the
    `real` and `test` extras), that import took 1.3-1.5 of Keras' 4 CPU seconds (SciPy's
    statistics). Keras' `keras.wrappers.SKLearn*` then say scikit-learn is missing; import
    Keras before img2num to keep them.

    Returns:
        The `keras` module.
    """
    if "keras" not in sys.modules and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # `import sklearn` raises ImportError, which Keras allows for
        try:
            import keras
        finally:
            if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
                del sys.modules["sklearn"]
    import keras

    return keras


def compilation_cache_folder() -> Path | None:
    """The folder of JAX's persistent compilation cache: IMG2NUM_JAX_CACHE when set (None when
    it is empty, 0, off, no or false), else `img2num/jax` in the user's cache folder
    (XDG_CACHE_HOME, default ~/.cache). Deleting the folder is safe: programs compile again."""
    value = os.environ.get(CACHE_VARIABLE)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "img2num" / "jax"


def enable_compilation_cache() -> Path | None:
    """Keep JAX's compiled programs in `compilation_cache_folder`, when Keras runs (or is about
    to run) on JAX and neither the user nor an earlier call set a cache folder.

    A second `train` or `predict` of the same model and shapes then loads its programs instead
    of compiling them (docs/speed.md). JAX reads the setting at its first compilation, so this
    runs before Keras is imported.

    Returns:
        The cache folder in use, or None when there is none.
    """
    if os.environ.get("KERAS_BACKEND") != "jax" or not _installed("jax"):
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = compilation_cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: compile every time, as without the cache
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX keeps only programs that took a second or more to compile by default; img2num's
    # take 0.05-1 s each, and a run compiles several.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None
