"""The shifted-sum depthwise convolution gives what Keras' own JAX convolution gives."""

import keras
import numpy as np
import pytest

from img2num.jax_ops import _shifted_depthwise, use_fast_depthwise

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX replacement")


@pytest.mark.parametrize(
    "size, kernel, strides, padding",
    [((9, 9), 3, 1, "same"), ((10, 7), 3, 2, "same"), ((11, 12), 5, 2, "same"), ((9, 8), 5, 1, "valid"), ((8, 9), 3, 2, "valid")],
)
def test_shifted_depthwise_equals_keras(size, kernel, strides, padding):
    from keras.src.backend.jax import nn

    original = getattr(nn.depthwise_conv, "__wrapped__", nn.depthwise_conv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *size, 6)).astype(np.float32)
    k = rng.normal(size=(kernel, kernel, 6, 1)).astype(np.float32)
    expected = np.asarray(original(x, k, strides, padding))
    got = np.asarray(_shifted_depthwise(original)(x, k, strides, padding))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Cases it does not handle (a depth multiplier of 2, dilation) go to Keras' own code.
    k2 = rng.normal(size=(kernel, kernel, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(_shifted_depthwise(original)(x, k2, strides, padding)), np.asarray(original(x, k2, strides, padding)))


def test_a_depthwise_layer_uses_it_once_installed():
    from keras.src.backend.jax import nn

    assert use_fast_depthwise() and use_fast_depthwise()
    assert nn.depthwise_conv._img2num_shifted and not hasattr(nn.depthwise_conv.__wrapped__, "_img2num_shifted")
    layer = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")
    x = np.random.default_rng(1).normal(size=(1, 7, 7, 4)).astype(np.float32)
    out = np.asarray(layer(x))
    expected = np.asarray(nn.depthwise_conv.__wrapped__(x, layer.kernel.value, 2, "same")) + np.asarray(layer.bias.value)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
