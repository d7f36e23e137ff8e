"""Which Keras backend trains: the user's choice, or the faster one for the model and images.

Keras reads its backend once, when it is first imported, so the choice is made before that
(`select_backend`). The rule for "auto" comes from `benchmarks/speed.py` on CPUs: img2num's
compiled loop on JAX is fastest for small models and images (it removes the per-step overhead
that dominates them), and Keras on PyTorch, whose oneDNN convolutions are about twice as fast
as XLA's on the CPU, for convolutional models with enough work per image; each registered
model states from which image area that holds (`ModelSpec.torch_from_pixels`).

On JAX, compiled programs are kept in a persistent cache folder (`compilation_cache_folder`), so
that a second run of the same model and shapes loads them instead of compiling again, and Keras'
uniform weight initializers draw their numbers with NumPy, bit for bit as JAX would, instead of
compiling one program per weight shape (`use_numpy_uniform`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2num.backbones import is_backbone
from img2num.config import BACKENDS
from img2num.errors import Img2NumError
from img2num.models import get_model_spec

# The backend when nothing else decides.
DEFAULT_BACKEND = "jax"
# The backends a process can run on; each needs the Python package of its name.
_RUNNABLE = tuple(name for name in BACKENDS if name != "auto")
# Where JAX's compiled programs are kept: a folder, or one of _OFF to keep none.
CACHE_VARIABLE = "IMG2NUM_JAX_CACHE"
_OFF = ("", "0", "off", "no", "false")


def user_backend() -> str | None:
    """The backend the user named in KERAS_BACKEND before img2num set its default, if any."""
    import img2num

    return img2num._USER_KERAS_BACKEND


def loaded_backend() -> str | None:
    """The backend Keras runs on, or None while Keras is not imported yet."""
    if "keras" not in sys.modules:
        return None
    return sys.modules["keras"].backend.backend()


def preferred_backend(models: Sequence[str], image_shape: Sequence[int]) -> str:
    """The faster backend by the rule of the module docstring: "torch" when any of `models`
    trains faster there on images of `image_shape` (and PyTorch is installed), else "jax"."""
    pixels = int(image_shape[0]) * int(image_shape[1])
    for name in models:
        if is_backbone(name):  # pretrained backbones run on JAX (docs/backbones.md)
            continue
        threshold = get_model_spec(name).torch_from_pixels
        if threshold is not None and pixels >= threshold and _installed("torch"):
            return "torch"
    return DEFAULT_BACKEND


def choose_backend(requested: str, models: Sequence[str], image_shape: Sequence[int]) -> str:
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


def select_backend(name: str) -> None:
    """Make Keras run on `name`: set KERAS_BACKEND and import Keras.

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
    enable_compilation_cache()
    # Keras reads KERAS_BACKEND once, when imported: importing it now fixes the choice, so that
    # a later "auto" in this process (each model `compare` trains) keeps it.
    import_keras()
    use_numpy_uniform()
    from img2num.jax_ops import use_fast_depthwise

    use_fast_depthwise()


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


# Threefry-2x32's rotations, alternating by group of four rounds (JAX's `threefry2x32`).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
# Weights of more values than this draw by JAX as before (NumPy's pass costs about 0.06 CPU s
# per million values; a compilation 0.3-2 CPU s).
_NUMPY_UNIFORM_MAX = 1 << 26


def use_numpy_uniform() -> bool:
    """When Keras runs on JAX, draw its uniform random numbers outside compiled code (the weight
    initializers: `glorot_uniform`, the default of Dense and Conv layers, and `random_uniform`)
    with NumPy, bit for bit the numbers JAX's threefry generator gives.

    JAX compiles its generator once per shape, 0.3-2 CPU seconds each on 2 CPU cores: most of
    a first run's model build (docs/speed.md). Numbers drawn inside compiled code (dropout,
    augmentation), other dtypes and other generator settings go to JAX as before.

    Returns:
        Whether the NumPy path is in place (False on other backends).
    """
    from img2num.jax_ops import replace_on_jax

    return replace_on_jax("keras.src.backend.jax.random", "uniform", _numpy_uniform, "_img2num_numpy")


def _numpy_uniform(original):
    @functools.wraps(original)
    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        import jax
        from keras.src.backend import standardize_dtype
        from keras.src.backend.config import floatx
        from keras.src.backend.jax.random import jax_draw_seed

        key = jax_draw_seed(seed)
        size = int(np.prod(shape)) if all(isinstance(d, (int, np.integer)) for d in shape) else -1
        if (
            isinstance(key, jax.core.Tracer)
            or not isinstance(key, jax.Array)
            or key.dtype != np.uint32
            or key.shape != (2,)
            or not 0 <= size <= _NUMPY_UNIFORM_MAX
            or standardize_dtype(dtype or floatx()) != "float32"
            or not all(isinstance(v, (int, float, np.floating, np.integer)) for v in (minval, maxval))
            or jax.config.jax_default_prng_impl != "threefry2x32"
            or not jax.config.jax_threefry_partitionable
        ):
            return original(shape, minval=minval, maxval=maxval, dtype=dtype, seed=key)
        return jax.numpy.asarray(threefry_uniform(np.asarray(key), tuple(shape), minval, maxval))

    return uniform


def threefry_uniform(key: np.ndarray, shape: tuple[int, ...], minval: float, maxval: float) -> np.ndarray:
    """float32 numbers in [minval, maxval) of `shape`, equal to `jax.random.uniform(key, shape,
    float32, minval, maxval)` for a raw threefry key (two uint32) with JAX's partitionable
    threefry (the default): hash each element's index, keep 23 bits as the mantissa of a
    number in [1, 2), shift and scale."""
    k1, k2 = np.uint32(key[0]), np.uint32(key[1])
    keys = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    size = int(np.prod(shape))
    # The index's high word is 0 below 2**32 elements; the low word counts.
    high = np.full(size, keys[0], np.uint32)
    low = np.arange(size, dtype=np.uint32)
    low += keys[1]
    spare = np.empty_like(low)
    with np.errstate(over="ignore"):
        for group in range(5):
            for rotation in _ROTATIONS[group % 2]:
                high += low
                np.right_shift(low, np.uint32(32 - rotation), out=spare)
                np.left_shift(low, np.uint32(rotation), out=low)
                low |= spare
                low ^= high
            high += keys[(group + 1) % 3]
            low += keys[(group + 2) % 3] + np.uint32(group + 1)
    high ^= low
    high >>= np.uint32(9)
    high |= np.uint32(0x3F800000)  # the exponent of [1, 2)
    floats = high.view(np.float32) - np.float32(1.0)
    low_bound, high_bound = np.float32(minval), np.float32(maxval)
    # XLA computes floats * (max - min) + min as one fused multiply-add: the product is exact in
    # float64, and one rounding to float32 follows.
    scaled = (floats.astype(np.float64) * np.float64(high_bound - low_bound) + np.float64(low_bound)).astype(np.float32)
    return np.maximum(low_bound, scaled).reshape(shape)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None
