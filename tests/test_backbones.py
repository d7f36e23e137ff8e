"""`backbone:PRESET` models: the backbone's input and pooling layers, the feature cache, the heads,
and training, saving and predicting on a tiny random backbone saved as a local preset."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from img2num.backbones import backbone_spec, is_backbone, is_finetune
from img2num.backbones import features as feats
from img2num.backbones.heads import choose_head, feature_scaling, fit_ridge, head_outputs
from img2num.bundle import Preprocessing
from img2num.data import Dataset
from img2num.errors import Img2NumError
from img2num.layers import BackboneInput, MeanStdPooling
from img2num.models import check_model_name


def test_backbone_names():
    assert is_backbone("backbone:efficientnet_lite0") and not is_finetune("backbone:x")
    assert is_backbone("finetune:/some/folder") and is_finetune("finetune:/some/folder")
    assert not is_backbone("cnn_gap")
    assert backbone_spec("backbone:hf://timm/efficientnet_lite0.ra_in1k") == "hf://timm/efficientnet_lite0.ra_in1k"
    check_model_name("backbone:anything")
    for bad in ("backbone:", "finetune:  "):
        with pytest.raises(Img2NumError, match="names no backbone"):
            check_model_name(bad)
    with pytest.raises(Img2NumError, match="unknown model 'nope'.*backbone:PRESET"):
        check_model_name("nope")


def test_mean_std_pooling_matches_numpy():
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 2)).astype(np.float32)
    pooled = keras.ops.convert_to_numpy(MeanStdPooling()(x))
    assert pooled.shape == (3, 4)
    np.testing.assert_allclose(pooled[:, :2], x.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(pooled[:, 2:], x.std(axis=(1, 2)), atol=1e-5)


def test_backbone_input_bands_normalisation_and_size():
    grey = np.full((2, 8, 8, 1), 0.5, np.float32)
    layer = BackboneInput(scale=(1 / 128,) * 3, offset=(-127 / 128,) * 3, size=(16, 12))
    out = keras.ops.convert_to_numpy(layer(grey))
    assert out.shape == (2, 16, 12, 3)
    np.testing.assert_allclose(out, (0.5 * 255 - 127) / 128, atol=1e-5)
    two = np.stack([np.zeros((8, 8)), np.ones((8, 8))], axis=-1)[None].astype(np.float32)
    out = keras.ops.convert_to_numpy(BackboneInput(scale=(1, 1, 1), offset=(0, 0, 0))(two))
    np.testing.assert_allclose(out[0, 0, 0], [0, 255, 127.5], atol=1e-4)
    # Standardized bands (pixel_range 0) pass as they are; only the first three of five are kept.
    five = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5) * np.ones((1, 4, 4, 1), np.float32)
    out = keras.ops.convert_to_numpy(BackboneInput(scale=(2, 2, 2), offset=(1, 1, 1), pixel_range=0)(five))
    np.testing.assert_allclose(out[0, 0, 0], [0, 1, 2])
    config = BackboneInput.from_config(layer.get_config()).get_config()
    assert config["size"] == [16, 12] and config["scale"] == [1 / 128] * 3


def test_feature_size_and_too_small_images():
    assert feats.feature_size((32, 48, 1)) == (64, 96)
    assert feats.feature_size((100, 80, 3)) == (100, 80)
    info = SimpleNamespace(spec="tiny", min_size=32)
    feats.check_image_size((32, 40, 3), info)
    with pytest.raises(Img2NumError, match=r"images of 16x40 pixels are smaller than backbone 'tiny' accepts \(32x32"):
        feats.check_image_size((16, 40, 3), info)


def test_feature_scaling_floors_nearly_constant_features():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(0, 1, 200), rng.normal(5, 2, 200), np.full(200, 3.0) + rng.normal(0, 1e-9, 200)])
    mean, spread = feature_scaling(x)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(spread[:2], x.std(axis=0)[:2], rtol=1e-5)
    # The constant feature's spread is floored at a tenth of the median spread, not 1e-9.
    assert spread[2] == pytest.approx(0.1 * np.median(x.std(axis=0)), rel=1e-5)


def test_ridge_head_fits_a_linear_target_and_chooses_by_validation():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=6)
    z = rng.normal(size=(300, 6))
    y = z @ weights + rng.normal(0, 0.05, 300)
    fit = fit_ridge(z[:200], y[:200], z[200:], y[200:], loss_factor=4.0)
    assert fit.kind == "ridge" and fit.val_mse < 0.01
    assert fit.history[0]["val_loss"] == pytest.approx(4.0 * fit.val_mse)
    kernel, bias = fit.layers[0].get_weights()
    np.testing.assert_allclose(kernel[:, 0], weights, atol=0.05)
    # choose_head keeps the head with the lower validation error and gives every head's error.
    features = {"train": z[:200] * 3 + 1, "val": z[200:] * 3 + 1}
    scaling, chosen, errors = choose_head(features, y[:200], y[200:], 1.0, seed=0, heads=("ridge",))
    assert chosen.kind == "ridge" and set(errors) == {"ridge"}
    predicted = head_outputs(features["val"], scaling, chosen).reshape(-1)
    assert np.mean((predicted - y[200:]) ** 2) == pytest.approx(errors["ridge"], rel=1e-4)


def _counter_model():
    """A stand-in feature model that counts its calls: each image's mean and maximum."""
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Concatenate()(
        [keras.ops.mean(flat, axis=1, keepdims=True), keras.ops.max(flat, axis=1, keepdims=True)]
    )
    return keras.Model(inputs, outputs)


def test_feature_cache_keys_by_content_and_survives_a_corrupt_shard(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    split = Dataset(x, np.zeros(10, np.float32), "cache-test")
    preprocessing = Preprocessing.for_images(x)
    model = _counter_model()
    cache = feats.FeatureCache(tmp_path, "key")
    first, computed = feats.extract_features(model, split, preprocessing, cache)
    assert computed == 10 and first.shape == (10, 2)
    np.testing.assert_allclose(first[:, 1], x.reshape(10, -1).max(axis=1) / 255, rtol=1e-6)
    # A new cache object (a second run) reads the shard; only images it has not seen are computed.
    more = Dataset(np.concatenate([x[:5], 255 - x[:3]]), np.zeros(8, np.float32), "more")
    again, computed = feats.extract_features(model, more, preprocessing, feats.FeatureCache(tmp_path, "key"))
    assert computed == 3
    np.testing.assert_allclose(again[:5], first[:5])
    # Another key (another backbone or preprocessing) shares nothing; a corrupt shard is a miss.
    assert feats.extract_features(model, split, preprocessing, feats.FeatureCache(tmp_path, "other"))[1] == 10
    for shard in (tmp_path / "key").glob("shard-*.npz"):
        shard.write_bytes(b"not an npz")
    assert feats.extract_features(model, split, preprocessing, feats.FeatureCache(tmp_path, "key"))[1] == 10
    assert feats.extract_features(model, split, preprocessing, None)[1] == 10


def test_feature_cache_folder_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("IMG2NUM_FEATURES", str(tmp_path / "f"))
    assert feats.feature_cache_folder() == tmp_path / "f"
    monkeypatch.setenv("IMG2NUM_FEATURES", "off")
    assert feats.feature_cache_folder() is None
    monkeypatch.delenv("IMG2NUM_FEATURES")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert feats.feature_cache_folder() == tmp_path / "img2num" / "features"
    assert len(feats.image_keys(np.zeros((2, 3, 3, 1), np.uint8))[0]) == 16
    assert feats.image_keys(np.zeros((1, 3, 3, 1), np.uint8))[0] != feats.image_keys(np.zeros((1, 3, 3, 1), np.uint16))[0]
