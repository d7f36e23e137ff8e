"""Faster JAX forms of Keras operations that XLA's CPU compiler runs slowly: the depthwise
convolution of MobileNet- and EfficientNet-style backbones, as a sum of shifted products; and
`replace_on_jax`, which puts such a form in place of a function of Keras' JAX backend."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable


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
    from img2num.backends import loaded_backend

    if loaded_backend() != "jax":
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
