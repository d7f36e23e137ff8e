"""Channels-first copies of convolutional models, which train faster on Keras' PyTorch backend
and hold the same weights as the channels-last model that is saved."""

from __future__ import annotations

import weakref

import numpy as np

# Layers that compute the same in both layouts once their `data_format` is channels first.
_FORMATTED = {
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    # Channels first, Flatten moves the channels last before flattening: the values come out in
    # the channels-last model's order, so the Dense layer after it keeps its weights.
    "Flatten",
}
# The layers whose channels-first form is faster on PyTorch; a model without one gains nothing.
_CONVOLUTIONS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D"}
# Layers that act element by element on tensors of one shape, whatever the layout.
_ELEMENTWISE = {
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Identity",
}
_CHANNELS_LAST_AXES = (-1, 3, [-1], [3])
# Each model's twin for prediction; not an attribute, which Keras would track as a sublayer.
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def channels_first_twin(model):
    """A channels-first copy of `model`: it takes images as (channels, height, width).

    On PyTorch, Keras transposes the input and kernel of every convolution of a channels-last
    model to channels first, and the output back, at every call; the copy avoids that
    (`benchmarks/speed.py`: 1.10-1.16x faster per epoch for `cnn_gap` and `resnet` on 64x64 RGB).
    Its batches are transposed once each, on the host (`stream.fit_batches`); a Permute layer
    inside the copy instead left the tensors strided channels last, and `resnet` slower. A
    convolution kernel, a batch normalization's statistics and a dense layer's matrix have the
    same shapes in both layouts, so the copy holds the model's weights in the same order and
    computes the same function; training copies the weights in and back (`copy_state`).

    Args:
        model: A Keras model on images of shape (height, width, channels).

    Returns:
        A model with the same weights, in the same order, computing the same function with its
        convolutions channels first.

    Raises:
        ValueError: `model` is not `convertible`.
    """
    import keras

    if not convertible(model):
        raise ValueError(f"model {model.name!r} has layers that depend on the layout")
    height, width, channels = model.input_shape[1:]
    twin = keras.models.clone_model(
        model, input_tensors=keras.Input((channels, height, width)), clone_function=_channels_first
    )
    if [w.shape for w in twin.weights] != [w.shape for w in model.weights]:
        raise ValueError(f"the channels-first copy of {model.name!r} holds other weights")
    return twin


def convertible(model) -> bool:
    """Whether `model` has a channels-first twin worth training: one image input, a convolution,
    and only layers listed here."""
    return (
        len(model.inputs) == 1
        and len(model.input_shape) == 4
        and any(type(layer).__name__ in _CONVOLUTIONS for layer in model.layers)
        and all(map(_convertible, model.layers))
    )


def copy_state(source, target) -> None:
    """Copy the weights and the optimizer's state (step count, learning rate, moments) of
    `source` into `target`, a model of the same weights: a twin and its model."""
    target.set_weights(source.get_weights())
    if source.optimizer is None or not source.optimizer.built:
        return
    if not target.optimizer.built:
        target.optimizer.build(target.trainable_variables)
    for mine, theirs in zip(target.optimizer.variables, source.optimizer.variables, strict=True):
        mine.assign(theirs)


def predict_channels_first(model, inputs, batch_size: int):
    """`model.predict` on channels-last `inputs`, run by the model's channels-first twin (built
    once per model, weights copied at every call); about 1.3x faster for `resnet` on PyTorch."""
    twin = _TWINS.get(model)
    if twin is None:
        twin = _TWINS[model] = channels_first_twin(model)
    twin.set_weights(model.get_weights())
    return twin.predict(np.ascontiguousarray(np.asarray(inputs).transpose(0, 3, 1, 2)), batch_size=batch_size, verbose=0)


def _convertible(layer) -> bool:
    kind = type(layer).__name__
    if not type(layer).__module__.startswith("keras."):
        return False
    config = layer.get_config()
    if kind in _FORMATTED:
        return not config.get("keepdims", False)
    if kind == "BatchNormalization":
        return config["axis"] in _CHANNELS_LAST_AXES
    if kind == "Dense":
        return len(layer.input.shape) == 2
    if kind == "Dropout":
        return config.get("noise_shape") is None
    return kind in _ELEMENTWISE


def _channels_first(layer):
    config = layer.get_config()
    if "data_format" in config:
        config["data_format"] = "channels_first"
    if type(layer).__name__ == "BatchNormalization":
        config["axis"] = 1
    return layer.__class__.from_config(config)
