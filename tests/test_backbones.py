"""`backbone:PRESET` models: the backbone's input and pooling layers, the feature cache, the heads,
and training, saving and predicting on a tiny random backbone saved as a local preset."""

import json
from dataclasses import replace
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from img2num import registry
from img2num.backbones import features as feats
from img2num.backbones.heads import choose_head, feature_scaling, fit_ridge, head_outputs
from img2num.data import Dataset, resolve_splits
from img2num.errors import Img2NumError
from img2num.layers import BackboneInput, MeanStdPooling
from img2num.metrics import regression_metrics
from img2num.preprocessing import Preprocessing
from img2num.registry import backbone_spec, check_model_name, is_backbone, is_finetune, model_folder_name, model_spec


def test_backbone_names_parse_validate_and_give_flat_folder_names():
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
    # Folder names of runs and pictures never nest a preset's path.
    names = {
        "cnn_gap": "cnn_gap",
        "backbone:efficientnet_lite0": "backbone-efficientnet_lite0",
        "finetune:/presets/tiny/": "finetune-tiny",
        "backbone:hf://timm/efficientnet_lite0.ra_in1k": "backbone-efficientnet_lite0.ra_in1k",
        "backbone:kaggle://keras/efficientnet/keras/lite0/2": "backbone-lite0",
    }
    assert {name: model_folder_name(name) for name in names} == names


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


def test_feature_size_follows_the_image_and_too_small_images_are_refused():
    assert feats.feature_size((32, 48, 1)) == (128, 192)
    assert feats.feature_size((100, 80, 3)) == (160, 128)
    assert feats.feature_size((200, 150, 3)) == (200, 150)
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
    # Groups weigh alike: a group of two features has its spreads multiplied by sqrt(2).
    _, grouped = feature_scaling(x, groups=[1, 2])
    np.testing.assert_allclose(grouped, spread * np.array([1, np.sqrt(2), np.sqrt(2)]), rtol=1e-6)
    with pytest.raises(ValueError, match="groups of 4 features for vectors of 3"):
        feature_scaling(x, groups=[2, 2])


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
    # With fewer images than features the fit goes through the images' Gram matrix: the same
    # solution as solving the penalised normal equations directly.
    wide, target = rng.normal(size=(30, 50)) + 2.0, rng.normal(size=30)
    fit = fit_ridge(wide[:20], target[:20], wide[20:], target[20:], loss_factor=1.0)
    centred = wide[:20] - wide[:20].mean(axis=0)
    penalty = fit.detail["penalty_share"] * np.linalg.eigvalsh(centred.T @ centred)[-1]
    direct = np.linalg.solve(centred.T @ centred + penalty * np.eye(50), centred.T @ (target[:20] - target[:20].mean()))
    np.testing.assert_allclose(fit.layers[0].get_weights()[0][:, 0], direct, rtol=1e-3, atol=1e-5)
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


def test_feature_cache_folder_follows_its_settings_and_keys_tell_dtypes_apart(monkeypatch, tmp_path):
    monkeypatch.setenv("IMG2NUM_FEATURES", str(tmp_path / "f"))
    assert feats.feature_cache_folder() == tmp_path / "f"
    monkeypatch.setenv("IMG2NUM_FEATURES", "off")
    assert feats.feature_cache_folder() is None
    monkeypatch.delenv("IMG2NUM_FEATURES")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert feats.feature_cache_folder() == tmp_path / "img2num" / "features"
    assert len(feats.image_keys(np.zeros((2, 3, 3, 1), np.uint8))[0]) == 16
    assert feats.image_keys(np.zeros((1, 3, 3, 1), np.uint8))[0] != feats.image_keys(np.zeros((1, 3, 3, 1), np.uint16))[0]


@pytest.fixture(scope="module")
def random_preset(tmp_path_factory):
    from conftest import require

    from img2num.backbones.random_preset import save_random_preset

    require("keras_hub")

    return save_random_preset(tmp_path_factory.mktemp("preset") / "tiny", seed=0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import write_photos

    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder, count=40, size=(32, 32), split=True)
    return folder


def test_train_save_and_predict_with_a_backbone(random_preset, photos, tmp_path, capsys):
    from conftest import run_cli

    from img2num.bundle import load_run

    run_dir = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", photos, "--model", f"backbone:{random_preset}", "--run", run_dir)
    assert status == 0, err
    assert "features of 40 images" in err and "(40 computed on keras, 0 from the cache)" in err
    config = json.loads((run_dir / "config.json").read_text())
    record = config["backbone"]
    assert config["train"]["model"] == f"backbone:{random_preset}" and config["trainer"] == "features"
    assert record["stages"] == ["P1", "P2", "P3"] and record["feature_size"] == [128, 128]
    assert record["head"] in ("ridge", "mlp") and set(record["head_val_mse"]) == {"ridge", "mlp"}
    # Mean and spread of the 3 bands and of each stage's channels.
    assert record["features"] > 6 and record["features"] % 2 == 0
    for name in ("model.keras", "metrics.json", "predictions.png", "loss.png"):
        assert (run_dir / name).is_file(), name
    # The saved model alone predicts what the run was evaluated with.
    # It needs neither the preset nor the hub: the run is loaded with the preset moved away.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    moved = random_preset.with_name("moved")
    random_preset.rename(moved)
    try:
        run = load_run(run_dir)
        test = resolve_splits(photos)["test"]
        predicted = run.predict_data(test)
    finally:
        moved.rename(random_preset)
    assert regression_metrics(test.y, predicted)["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-4)
    # A second run reads every image's features from the cache.
    status, _, err = run_cli(capsys, "train", photos, "--model", f"backbone:{random_preset}", "--run", tmp_path / "again")
    assert status == 0 and "(0 computed, 40 from the cache)" in err
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == metrics


def test_features_on_onnx_runtime_equal_keras_and_the_graph_is_kept(random_preset, photos, tmp_path, monkeypatch):
    from conftest import require

    from img2num.backbones.presets import load_backbone, resolve_backbone

    require("onnxruntime")
    backbone, info = load_backbone(resolve_backbone(str(random_preset)).spec)
    split = resolve_splits(photos)["train"]
    preprocessing = Preprocessing.for_data(split)
    model = feats.feature_model(backbone, info, preprocessing)
    inputs = preprocessing.apply(split.x, split.source)
    monkeypatch.setenv(feats.ENGINE_VARIABLE, "keras")
    on_keras = feats.FeatureEngine(model, tmp_path, images=10_000)
    monkeypatch.setenv(feats.ENGINE_VARIABLE, "onnx")
    on_onnx = feats.FeatureEngine(model, tmp_path, images=1)
    assert (on_keras.name, on_onnx.name) == ("keras", "onnx")
    np.testing.assert_allclose(on_onnx(inputs), on_keras(inputs), rtol=1e-4, atol=1e-4)
    assert (tmp_path / feats.GRAPH_FILE).stat().st_size > 0  # exported once, kept beside the vectors
    # auto: ONNX Runtime only on PyTorch (jax2onnx's graph ran slower than Keras on JAX) and where
    # enough images are to be computed to repay the export.
    monkeypatch.setenv(feats.ENGINE_VARIABLE, "auto")
    assert feats.FeatureEngine(model, tmp_path, images=feats.ONNX_MIN_IMAGES - 1).name == "keras"
    enough = feats.FeatureEngine(model, tmp_path, images=feats.ONNX_MIN_IMAGES).name
    assert enough == ("onnx" if keras.backend.backend() == "torch" else "keras")
    monkeypatch.setenv(feats.ENGINE_VARIABLE, "fast")
    with pytest.raises(Img2NumError, match="IMG2NUM_FEATURE_ENGINE='fast': expected one of auto, keras, onnx"):
        feats.FeatureEngine(model, tmp_path, images=1)


def test_compare_a_backbone_beside_a_model(random_preset, photos, tmp_path, capsys):
    from conftest import run_cli

    name = f"backbone:{random_preset}"
    status, out, err = run_cli(capsys, "compare", photos, "--models", f"{name},pixel_gap", "--epochs", "2", "--out", tmp_path / "cmp")
    assert status == 0, err
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    entries = {entry["name"]: entry for entry in results["entries"]}
    assert {name, "pixel_gap", "mean-baseline", "ridge-baseline"} <= set(entries)
    assert entries[name]["run"] == "runs/seed-0/backbone-tiny"
    assert (tmp_path / "cmp" / "runs" / "seed-0" / "backbone-tiny" / "model.keras").is_file()
    assert (tmp_path / "cmp" / "pictures" / "backbone-tiny-diagnostics.png").is_file()
    assert "pictures/backbone-tiny-worst.png" in (tmp_path / "cmp" / "report.md").read_text()


def test_backbone_bad_input_is_one_line_and_writes_nothing(random_preset, photos, tmp_path, capsys):
    from conftest import one_line_error, run_cli, write_photos

    small = tmp_path / "small"
    write_photos(small, count=12, size=(6, 6))
    not_preset = tmp_path / "not_a_preset"
    not_preset.mkdir()
    cases = {
        ("backbone:no_such_preset", photos): "unknown backbone preset 'no_such_preset'",
        (f"backbone:{not_preset}", photos): "not a keras-hub preset",
        (f"backbone:{random_preset}", small): "images of 6x6 pixels are smaller than backbone",
        ("backbone:", photos): "names no backbone",
    }
    for (model, data), message in cases.items():
        run_dir = tmp_path / "run"
        status, _, err = run_cli(capsys, "train", data, "--model", model, "--run", run_dir)
        assert status == 1 and message in one_line_error(err), (model, err)
        assert not run_dir.exists()


def test_auto_ranks_a_backbone_candidate_with_the_others(random_preset, photos, tmp_path, monkeypatch):
    import io

    from img2num.config import TrainConfig
    from img2num.training import train

    def candidates(*names):
        specs = [replace(model_spec(n), candidate=registry.Candidate("x", lambda shape: True, rank)) for rank, n in enumerate(names)]
        return lambda: specs

    name = f"backbone:{random_preset}"
    monkeypatch.setattr(registry, "list_candidates", candidates("pixel_gap", name))
    stream = io.StringIO()
    run = train(photos, TrainConfig(epochs=3, seed=0), run_dir=tmp_path / "run", stream=stream)
    rows = {row["model"]: row for row in run.config["selection"]["candidates"]}
    assert set(rows) == {"pixel_gap", name}
    # The head is fitted at once: its epochs are the head's own, and early stopping played no part.
    assert rows[name]["epochs"] >= 1 and not rows[name]["stopped_early"] and rows[name]["val_mse"] > 0
    chosen = run.config["selection"]["chosen"]
    assert min(rows, key=lambda model: rows[model]["val_mse"]) == chosen
    assert ("backbone" in run.config) == (chosen == name)
    assert f"auto: trying pixel_gap, {name}" in stream.getvalue()
    # A candidate whose preset cannot load is reported and leaves the others.
    monkeypatch.setattr(registry, "list_candidates", candidates("backbone:no_such_preset", "pixel_gap"))
    stream = io.StringIO()
    run = train(photos, TrainConfig(epochs=2, seed=0), stream=stream)
    assert run.config["selection"]["chosen"] == "pixel_gap"
    assert "auto: backbone:no_such_preset not tried: unknown backbone preset" in stream.getvalue()
    outcomes = {row["model"]: row["outcome"] for row in run.config["selection"]["candidates"]}
    assert outcomes["backbone:no_such_preset"].startswith("not tried: unknown backbone preset")


def test_backbone_candidate_applies_to_large_enough_images_with_weights_on_disk(monkeypatch):
    from img2num import autoselect
    from img2num.backbones import presets

    monkeypatch.setattr(presets, "available_offline", lambda spec: True)
    assert "backbone:efficientnet_lite0" in autoselect.candidate_models((32, 40, 3))
    assert "backbone:efficientnet_lite0" not in autoselect.candidate_models((31, 64, 3))
    monkeypatch.setattr(presets, "available_offline", lambda spec: False)
    assert "backbone:efficientnet_lite0" not in autoselect.candidate_models((224, 224, 3))


def test_extraction_stops_when_its_deadline_cannot_be_kept(monkeypatch):
    import time

    monkeypatch.setattr(feats.ExtractionBudget, "PIECE", 4)
    x = np.random.default_rng(4).integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8)
    split = Dataset(x, np.zeros(12, np.float32), "budget-test")
    preprocessing = Preprocessing.for_images(x)
    model = _counter_model()
    budget = feats.ExtractionBudget(time.perf_counter() + 3600, 12)
    vectors, computed = feats.extract_features(model, split, preprocessing, None, budget)
    assert computed == 12 and budget.computed == 12 and budget.images_left == 0 and vectors.shape == (12, 2)
    # A deadline already past: the first piece shows the rest cannot be done; one line says so.
    late = feats.ExtractionBudget(time.perf_counter() - 1, 12)
    with pytest.raises(Img2NumError, match=r"feature extraction would need about \d+ s more for 8 images .* 0 s are left"):
        feats.extract_features(model, split, preprocessing, None, late)
    assert late.computed == 4
