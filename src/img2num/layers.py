"""Keras layers that img2num saves inside its models: label-preserving augmentation, and the
input and pooling of pretrained backbones.

Importing this module registers the layers, so `keras.saving.load_model` can rebuild them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="img2num")
class RandomFlipsRotations(keras.layers.Layer):
    """Random flips and 90-degree rotations of each training image; identity at inference.

    Each image in a training batch is flipped upside down, flipped left to right and (for square
    images only) transposed, each with probability 1/2. Together these reach all eight
    symmetries of a square (four rotations, each mirrored or not), or the four flips of a
    rectangle. They keep a label that does not depend on orientation, such as a count.

    Args:
        seed: Seed of the layer's own random stream, so the same seed gives the same training.
        **kwargs: Other `keras.layers.Layer` arguments (name, ...).
    """

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training:
            return inputs
        height, width = inputs.shape[1], inputs.shape[2]
        images = inputs
        choices = keras.random.uniform((ops.shape(inputs)[0], 3, 1, 1, 1), seed=self.seed_generator) < 0.5
        images = ops.where(choices[:, 0], ops.flip(images, axis=1), images)
        images = ops.where(choices[:, 1], ops.flip(images, axis=2), images)
        if height is not None and height == width:
            images = ops.where(choices[:, 2], ops.transpose(images, (0, 2, 1, 3)), images)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def with_augmentation(model, seed: int):
    """`model` behind a `RandomFlipsRotations` layer, as one model with the same input and name.

    Args:
        model: A built `keras.Model` taking images (N, H, W, C).
        seed: Seed of the augmentation.

    Returns:
        A `keras.Model` that augments its input in training and passes it through at inference.
    """
    inputs = keras.Input(model.input_shape[1:])
    augmented = RandomFlipsRotations(seed=seed, name="augmentation")(inputs)
    return keras.Model(inputs, model(augmented), name=model.name)


@keras.saving.register_keras_serializable(package="img2num")
class BackboneInput(keras.layers.Layer):
    """The run's model input as a pretrained backbone takes it: three bands, its normalisation,
    its size.

    One band is repeated three times, two get their mean as the third, more than three keep the
    first three. Pixels of full scale `pixel_range` (1 for images scaled by their pixel type)
    are brought to 0-255 and normalised per band as `pixels * scale + offset`; with
    `pixel_range` 0 the bands are passed as they are (bands already standardized). Images are
    resized (bilinear) to `size` when they differ.

    Args:
        scale: Three per-band factors of the backbone's normalisation, on 0-255 pixels.
        offset: Three per-band offsets.
        pixel_range: The value of a full-scale pixel in the input, or 0.
        size: (height, width) the backbone takes.
        **kwargs: Other `keras.layers.Layer` arguments (name, ...).
    """

    def __init__(self, scale, offset, pixel_range: float = 1.0, size=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = tuple(float(v) for v in scale)
        self.offset = tuple(float(v) for v in offset)
        self.pixel_range = float(pixel_range)
        self.size = None if size is None else tuple(int(v) for v in size)

    def call(self, inputs):
        channels = inputs.shape[-1]
        if channels == 1:
            images = ops.concatenate([inputs] * 3, axis=-1)
        elif channels == 2:
            images = ops.concatenate([inputs, ops.mean(inputs, axis=-1, keepdims=True)], axis=-1)
        else:
            images = inputs[..., :3]
        if self.pixel_range > 0:
            factor = ops.convert_to_tensor([255.0 / self.pixel_range * s for s in self.scale], dtype=images.dtype)
            images = images * factor + ops.convert_to_tensor(self.offset, dtype=images.dtype)
        if self.size is not None and tuple(images.shape[1:3]) != self.size:
            images = bilinear_resize(images, self.size)
        return images

    def compute_output_shape(self, input_shape):
        size = self.size or tuple(input_shape[1:3])
        return (input_shape[0], *size, 3)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "scale": list(self.scale),
            "offset": list(self.offset),
            "pixel_range": self.pixel_range,
            "size": None if self.size is None else list(self.size),
        }


@keras.saving.register_keras_serializable(package="img2num")
class MeanStdPooling(keras.layers.Layer):
    """Each channel's mean and standard deviation over an image: (N, H, W, C) to (N, 2C)."""

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2))
        spread = ops.sqrt(ops.var(inputs, axis=(1, 2)) + 1e-12)
        return ops.concatenate([mean, spread], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package="img2num")
class WeightedSum(keras.layers.Layer):
    """A fixed weighted sum of several (N, 1) outputs: the ensemble of `img2num.ensemble`.

    Args:
        weights: One weight per input, summing to 1.
        **kwargs: Other `keras.layers.Layer` arguments (name, ...).
    """

    def __init__(self, weights, **kwargs) -> None:
        super().__init__(**kwargs)
        self.member_weights = [float(weight) for weight in weights]

    def call(self, inputs):
        return sum(weight * output for weight, output in zip(self.member_weights, inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "weights": self.member_weights}


def bilinear_resize(images, size: tuple[int, int]):
    """Bilinear resize (half-pixel centres, as `keras.ops.image.resize` enlarges) as two products
    with fixed matrices: the graph keeps a free batch size when exported to ONNX, where
    jax2onnx's resize needs a fixed one."""
    rows = _resize_matrix(int(images.shape[1]), size[0])
    columns = _resize_matrix(int(images.shape[2]), size[1])
    return ops.einsum("Hh,bhwc,Ww->bHWc", rows, images, columns)


def _resize_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of a triangle kernel at half-pixel centres, renormalised at the
    edges (the same as clamping to the edge pixel), without antialiasing as Keras' default."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(centres[:, None] - np.arange(source)[None, :]))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
