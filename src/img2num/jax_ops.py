"""img2num's forms of functions of Keras' JAX backend, each put in place by `replace_on_jax`: the
depthwise convolution of MobileNet- and EfficientNet-style backbones as a sum of shifted products,
which XLA's CPU compiler runs slowly; and the uniform weight initializers drawn with NumPy, bit for
bit as JAX would, instead of compiling one program per weight shape. Imports nothing from img2num."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable

import numpy as np


def replace_on_jax(module: str, name: str, wrap: Callable, marker: str) -> bool:
    """When Keras runs on JAX, replace `module.name` by `wrap(original)`, once per process.

    Args:
        module: A module of Keras' JAX backend, such as "keras.src.backend.jax.nn".
        name: The function to replace.
        wrap: Makes the replacement from the original (which it may call for other cases).
        marker: An attribute set on the replacement, so a second call leaves it in place.

    Returns:
        Whether the replacement is in place (False on other backends).
    """
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() != "jax":
        return False
    owner = importlib.import_module(module)
    original = getattr(owner, name)
    if not getattr(original, marker, False):
        replacement = wrap(original)
        setattr(replacement, marker, True)
        setattr(owner, name, replacement)
    return True


def use_fast_depthwise() -> bool:
    """When Keras runs on JAX, compute 2D depthwise convolutions (channels last, depth
    multiplier 1, no dilation, "same" or "valid" padding) as a sum of the kernel's shifted,
    per-channel products instead of XLA's grouped convolution.

    On 2 CPU cores XLA ran a 3x3 depthwise convolution of 32 images of 64x64x96 in 2.09 s, the
    shifted sum in 0.22 s (a 1x1 convolution of the same tensor: 0.37 s), so the depthwise
    layers were most of EfficientNet-Lite0's time (docs/backbones.md). The result is the same to
    float rounding; gradients follow through JAX as before. Other cases go to Keras' own code.

    Returns:
        Whether the shifted form is in place (False on other backends).
    """
    return replace_on_jax("keras.src.backend.jax.nn", "depthwise_conv", _shifted_depthwise, "_img2num_shifted")


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _shifted_depthwise(original):
    @functools.wraps(original)
    def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import jax.numpy as jnp
        from keras.src.backend import standardize_data_format

        x, k = jnp.asarray(inputs), jnp.asarray(kernel)
        padding = padding.lower() if isinstance(padding, str) else padding
        if (
            x.ndim != 4
            or k.ndim != 4
            or standardize_data_format(data_format) != "channels_last"
            or _pair(dilation_rate) != (1, 1)
            or padding not in ("same", "valid")
            or k.shape[3] != 1
            or k.shape[2] != x.shape[3]
            or not all(isinstance(d, int) for d in x.shape[1:3])
        ):
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        (kh, kw), (sh, sw), (height, width) = k.shape[:2], _pair(strides), x.shape[1:3]
        if padding == "same":  # as XLA's "SAME": the odd pixel of padding goes after
            oh, ow = -(-height // sh), -(-width // sw)
            ph, pw = max((oh - 1) * sh + kh - height, 0), max((ow - 1) * sw + kw - width, 0)
            x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        else:
            oh, ow = (height - kh) // sh + 1, (width - kw) // sw + 1
        out = None
        for i in range(kh):
            for j in range(kw):
                term = x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :] * k[i, j, :, 0]
                out = term if out is None else out + term
        return out

    return depthwise_conv


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
