"""The augmentation layer: label-preserving flips and rotations in training, identity otherwise."""

import numpy as np
import pytest

from img2num.layers import RandomFlipsRotations, with_augmentation
from img2num.models import create_model


def _symmetries(image: np.ndarray, square: bool) -> list[np.ndarray]:
    flips = [image, image[::-1], image[:, ::-1], image[::-1, ::-1]]
    if square:
        flips += [np.swapaxes(flip, 0, 1) for flip in flips]
    return flips


def _which(output: np.ndarray, image: np.ndarray, square: bool) -> int:
    matches = [i for i, candidate in enumerate(_symmetries(image, square)) if np.array_equal(output, candidate)]
    assert matches, "the output is no flip or rotation of its input"
    return matches[0]


@pytest.mark.parametrize("shape", [(6, 6, 2), (5, 7, 1)])
def test_training_output_is_a_symmetry_of_each_image(shape):
    x = np.random.default_rng(0).random((64, *shape), dtype=np.float32)
    out = np.asarray(RandomFlipsRotations(seed=1)(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    square = shape[0] == shape[1]
    used = {_which(out[i], x[i], square) for i in range(len(x))}
    # 64 draws reach every one of the 8 symmetries of a square (4 flips of a rectangle).
    assert used == set(range(8 if square else 4))
    assert np.allclose(out.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)))


def test_inference_passes_images_through():
    x = np.random.default_rng(1).random((8, 6, 6, 1), dtype=np.float32)
    layer = RandomFlipsRotations(seed=1)
    assert np.array_equal(np.asarray(layer(x)), x)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    model = with_augmentation(create_model("mlp", (6, 6, 1)), seed=1)
    plain = model.layers[-1]
    assert np.array_equal(model.predict(x, verbose=0), plain.predict(x, verbose=0))


def test_same_seed_same_augmentation():
    x = np.random.default_rng(2).random((16, 6, 6, 1), dtype=np.float32)
    first = np.asarray(RandomFlipsRotations(seed=3)(x, training=True))
    second = np.asarray(RandomFlipsRotations(seed=3)(x, training=True))
    other = np.asarray(RandomFlipsRotations(seed=4)(x, training=True))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_augmented_model_saves_and_loads(tmp_path):
    import keras

    model = with_augmentation(create_model("pixel_gap", (8, 8, 1)), seed=5)
    assert model.name == "pixel_gap" and model.count_params() == create_model("pixel_gap", (8, 8, 1)).count_params()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    layer = loaded.get_layer("augmentation")
    assert isinstance(layer, RandomFlipsRotations) and layer.seed == 5
    x = np.random.default_rng(3).random((4, 8, 8, 1), dtype=np.float32)
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
