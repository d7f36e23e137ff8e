"""The model registry: the tutorial's architectures, every model's contract, unknown names."""

import numpy as np
import pytest

from img2num.errors import Img2NumError
from img2num.models import create_model, list_models

MODEL_NAMES = [spec.name for spec in list_models()]


def _layers(model):
    rows = []
    for layer in model.layers:
        config = layer.get_config()
        rows.append(
            (
                type(layer).__name__,
                config.get("units") or config.get("filters") or config.get("pool_size"),
                config.get("activation"),
            )
        )
    return rows


def test_registry_lists_both_tutorial_models_with_descriptions():
    assert MODEL_NAMES[:2] == ["mlp", "cnn"]
    assert all(spec.description for spec in list_models())


def test_mlp_layers_and_parameters():
    model = create_model("mlp", (16, 16, 1))
    assert _layers(model) == [
        ("Flatten", None, None),
        ("Dense", 256, "relu"),
        ("Dense", 256, "relu"),
        ("Dense", 256, "linear"),
        ("Dense", 1, "linear"),
    ]
    assert model.count_params() == 197_633


def test_cnn_layers_and_parameters():
    model = create_model("cnn", (16, 16, 1))
    assert _layers(model) == [
        ("Conv2D", 32, "relu"),
        ("MaxPooling2D", (2, 2), None),
        ("Conv2D", 32, "relu"),
        ("MaxPooling2D", (2, 2), None),
        ("Flatten", None, None),
        ("Dense", 256, "relu"),
        ("Dense", 1, "linear"),
    ]
    assert [layer.get_config()["kernel_size"] for layer in model.layers if "kernel_size" in layer.get_config()] == [
        (3, 3),
        (3, 3),
    ]
    assert model.count_params() == 42_849


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(16, 16, 1), (8, 8, 1), (5, 7, 3), (2, 2, 1), (40, 24, 3)])
def test_every_model_builds_for_any_shape(name, shape):
    model = create_model(name, shape)
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    output = np.asarray(model.predict(x, verbose=0))
    assert output.shape == (4, 1)
    assert np.all(np.isfinite(output))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_saves_and_loads_to_identical_predictions(name, tmp_path):
    import keras

    model = create_model(name, (12, 12, 2))
    x = np.random.default_rng(1).random((6, 12, 12, 2), dtype=np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("name", ["cnn_gap", "resnet"])
def test_convolutional_models_pool_globally_and_take_photos(name):
    model = create_model(name, (128, 128, 3))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "GlobalAveragePooling2D" in kinds and "Flatten" not in kinds
    if name == "resnet":
        assert kinds.count("Add") == 4 and "BatchNormalization" in kinds
    # Four stages from 128 pixels down to 16 before the global average; three on small images.
    assert model.get_layer(index=kinds.index("GlobalAveragePooling2D")).input.shape[1:] == (16, 16, 128)
    assert create_model(name, (16, 16, 1)).layers[-3].input.shape[1:] == (4, 4, 64)
    assert model.output.shape[1:] == (1,)


def test_pixel_model_has_a_two_layer_head():
    model = create_model("pixel_gap", (6, 10, 3))
    kinds = [type(layer).__name__ for layer in model.layers]
    head = model.layers[kinds.index("GlobalAveragePooling2D") + 1 :]
    assert [layer.units for layer in head] == [256, 256, 1]
    assert [layer.get_config()["activation"] for layer in head] == ["relu", "relu", "linear"]


def test_pixel_model_ignores_where_pixels_are():
    model = create_model("pixel_gap", (6, 10, 3))
    x = np.random.default_rng(0).random((3, 6, 10, 3), dtype=np.float32)
    shuffled = x.reshape(3, 60, 3)[:, np.random.default_rng(1).permutation(60)].reshape(3, 6, 10, 3)
    assert np.allclose(model.predict(x, verbose=0), model.predict(shuffled, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.predict(x, verbose=0), model.predict(x[::-1], verbose=0))


def test_unknown_name_lists_known_models():
    with pytest.raises(Img2NumError, match="unknown model 'resnet9'; known models: mlp, cnn, cnn_gap, resnet, pixel_gap"):
        create_model("resnet9", (16, 16, 1))


def test_input_shape_without_channels_is_refused():
    with pytest.raises(Img2NumError, match="input shape must be"):
        create_model("mlp", (16, 16))
