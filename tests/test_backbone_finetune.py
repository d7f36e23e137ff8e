"""Fine-tuning `finetune:PRESET` models on a tiny random backbone: the frozen head as epoch 0, only
the last stages trained, batch-norm statistics kept, the cached prefix equal to the whole
network, and a saved run that predicts what was evaluated."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs

from img2num.config import PointsConfig, TrainConfig
from img2num.data import generate_points_splits
from img2num.errors import Img2NumError

pytestmark = needs("keras_hub")

SPLITS = PointsConfig(height=16, width=16, train=24, val=8, test=8, seed=5)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A tiny random EfficientNet-style preset (stages P1-P3)."""
    from img2num.backbones.random_preset import save_random_preset

    return str(save_random_preset(tmp_path_factory.mktemp("presets") / "tiny", seed=1))


@pytest.fixture(scope="module")
def data():
    return generate_points_splits(SPLITS)


@pytest.fixture(scope="module")
def tuned_run(preset, data, tmp_path_factory):
    """One `finetune:` run of two epochs, saved."""
    from img2num import train

    folder = tmp_path_factory.mktemp("runs") / "tuned"
    config = TrainConfig(model=f"finetune:{preset}", epochs=2, batch_size=8, seed=2)
    run = train(data["train"], config, val=data["val"], test=data["test"], run_dir=folder, quiet=True, pictures=False)
    return run, folder


def test_finetune_history_starts_with_the_frozen_head(tuned_run):
    run, _ = tuned_run
    record = run.config["backbone"]
    assert run.config["trainer"] == "finetune"
    assert [row["epoch"] for row in run.history] == [0, 1, 2]
    assert run.history[0]["val_loss"] == pytest.approx(record["head_val_mse"][record["head"]], rel=1e-4)
    assert all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in run.history)
    assert record["finetune_stages"] == ["P2", "P3"] and record["finetune_cut"] == "P1"
    assert record["finetune_epochs"] == 2 and record["finetune_cut_computed"] == SPLITS.train + SPLITS.val
    best = min(run.history, key=lambda row: row["val_loss"])
    assert run.config["best_epoch"] == run.config["weights_epoch"] == best["epoch"]
    assert run.metrics["val"]["mse"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_saved_finetuned_run_predicts_what_was_evaluated(tuned_run, data):
    from img2num import load_run
    from img2num.metrics import regression_metrics

    run, folder = tuned_run
    loaded = load_run(folder)
    predictions = loaded.predict(data["test"].x)
    np.testing.assert_allclose(predictions, run.predict(data["test"].x), rtol=1e-5, atol=1e-5)
    assert regression_metrics(data["test"].y, predictions)["mse"] == pytest.approx(run.metrics["test"]["mse"], rel=1e-4)


def _weights(model) -> dict[str, np.ndarray]:
    import keras

    return {variable.path: keras.ops.convert_to_numpy(variable.value).copy() for variable in model.weights}


def test_cached_prefix_step_equals_whole_network_step_and_only_the_suffix_moves(preset, data):
    import keras

    from img2num.backbones.features import feature_model
    from img2num.backbones.finetune import cut_model, split_backbone, tuning_model, whole_model
    from img2num.backbones.presets import load_backbone
    from img2num.preprocessing import Preprocessing

    backbone, info = load_backbone(preset)
    preprocessing = Preprocessing.for_data(data["train"])
    x = preprocessing.apply(data["train"].x[:8], "train")
    y = data["train"].y[:8].reshape(-1, 1) / 10
    numpy = keras.ops.convert_to_numpy
    features = numpy(feature_model(backbone, info, preprocessing)(x))
    split = split_backbone(backbone, info.stages, 2)
    head = [keras.layers.Dense(1, name="head")]
    whole = whole_model(split, info, preprocessing, head, "whole")
    frozen_size = 2 * x.shape[-1] + 2 * int(backbone.pyramid_outputs["P1"].shape[-1])
    cuts = numpy(cut_model(split, info, preprocessing)(x))
    tuning = tuning_model(split, frozen_size, cuts.shape[1:], head)
    np.testing.assert_allclose(numpy(tuning([features[:, :frozen_size], cuts])), numpy(whole(x)), rtol=1e-5, atol=1e-5)

    start = _weights(whole)
    tuning.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    tuning.train_on_batch([features[:, :frozen_size], cuts], y)
    cached = _weights(whole)
    whole.set_weights([start[variable.path] for variable in whole.weights])
    whole.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    whole.train_on_batch(x, y)
    direct = _weights(whole)

    moved = {path for path in start if not np.array_equal(start[path], cached[path])}
    assert moved and all(path.startswith(("block2", "block3", "top_conv", "head")) for path in moved), moved
    assert not any(path.endswith(("moving_mean", "moving_variance", "gamma", "beta")) for path in moved)
    assert any(path.startswith("block2") for path in moved)
    for path in start:
        np.testing.assert_allclose(cached[path], direct[path], rtol=1e-4, atol=1e-6, err_msg=path)


def test_whole_network_split_has_no_prefix(preset):
    from img2num.backbones.finetune import split_backbone
    from img2num.backbones.presets import load_backbone

    backbone, info = load_backbone(preset)
    split = split_backbone(backbone, info.stages, 0)
    assert split.prefix is None and split.tuned == ("P1", "P2", "P3") and split.cut == "input"
    assert any(variable.path.startswith("stem_conv") for variable in split.suffix.trainable_variables)
    with pytest.raises(Img2NumError, match="finetune stages"):
        TrainConfig(model="finetune:x", finetune_stages=-1)


def test_finetune_with_a_bad_preset_is_one_line(data, tmp_path):
    from img2num import train

    with pytest.raises(Img2NumError) as caught:
        train(data["train"], TrainConfig(model=f"finetune:{tmp_path / 'missing'}"), val=data["val"], run_dir=tmp_path / "run")
    assert "\n" not in str(caught.value) and "missing" in str(caught.value)
    assert not (tmp_path / "run").exists()
