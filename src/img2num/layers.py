"""Keras layers that img2num saves inside its models: label-preserving augmentation.

Importing this module registers the layers, so `keras.saving.load_model` can rebuild them.
"""

from __future__ import annotations

import keras
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
