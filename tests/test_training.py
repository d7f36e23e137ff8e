"""Training: loss goes down, seeds reproduce, the run folder is complete and never clobbered."""

import csv
import io
import json

import numpy as np
import pytest

from img2num import plots
from img2num.bundle import load_run
from img2num.preprocessing import TargetScaling
from img2num.config import TrainConfig
from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.fitting import build_model
from img2num.training import train

RUN_FILES = [
    ".img2num",
    "calibration.json",
    "config.json",
    "history.csv",
    "loss.png",
    "metrics.json",
    "model.keras",
    "predictions.png",
    "samples.png",
]


def test_run_folder_is_complete(trained_run):
    folder = trained_run.path
    assert sorted(p.name for p in folder.iterdir()) == RUN_FILES
    config = json.loads((folder / "config.json").read_text())
    assert config["train"] == TrainConfig(model="mlp", epochs=3, seed=1).to_dict()
    assert config["preprocessing"] == {
        "input_shape": [8, 8, 1], "pixel_scale": 1.0, "input_dtype": "uint8", "resize": "none", "input_kind": "arrays"
    }
    assert config["data"]["train"]["samples"] == 160 and config["data"]["test"]["samples"] == 30
    assert config["backend"] and config["img2num_version"] and config["epochs_run"] == 3
    assert config["parameters"] == 8 * 8 * 256 + 256 + 2 * (256 * 256 + 256) + 257
    with open(folder / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert set(rows[0]) == {"epoch", "loss", "val_loss", "seconds", "learning_rate"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert sorted(metrics) == ["test", "train", "val"]
    assert sorted(metrics["test"]) == ["mae", "mse", "r2", "rmse"]


def test_training_lowers_the_loss(tiny_folder):
    run = train(tiny_folder, TrainConfig(model="cnn", epochs=6, seed=0), quiet=True)
    losses = [row["loss"] for row in run.history]
    assert losses[-1] < 0.5 * losses[0]
    untrained_mse = float(np.mean(load_dataset(tiny_folder / "val.npz").y ** 2))
    assert run.metrics["val"]["mse"] < 0.5 * untrained_mse
    assert run.path is None


def test_same_seed_same_run_other_seed_other_run(tiny_folder):
    config = TrainConfig(model="mlp", epochs=2, seed=5)
    first = train(tiny_folder, config, quiet=True)
    second = train(tiny_folder, config, quiet=True)
    other = train(tiny_folder, TrainConfig(model="mlp", epochs=2, seed=6), quiet=True)
    losses = lambda run: [(row["loss"], row["val_loss"]) for row in run.history]  # noqa: E731
    assert losses(first) == losses(second)
    assert losses(first) != losses(other)
    test = load_dataset(tiny_folder / "test.npz")
    assert np.array_equal(first.predict(test.x), second.predict(test.x))


def test_saved_run_predicts_exactly_as_trained(trained_run, tiny_folder):
    test = load_dataset(tiny_folder / "test.npz")
    loaded = load_run(trained_run.path)
    assert np.array_equal(loaded.predict(test.x), trained_run.predict(test.x))
    assert loaded.history == trained_run.history
    assert loaded.metrics == trained_run.metrics


def test_validation_share_is_held_out_when_no_validation_set(tiny_folder):
    run = train(tiny_folder / "train.npz", TrainConfig(epochs=1, val_fraction=0.25), quiet=True)
    assert run.config["data"]["train"]["samples"] == 120
    assert run.config["data"]["val"]["samples"] == 40
    assert "held-out" in run.config["data"]["val"]["source"]
    assert "test" not in run.metrics


def test_existing_run_is_kept_without_overwrite(trained_run, tiny_folder):
    before = {p.name: p.read_bytes() for p in trained_run.path.iterdir()}
    with pytest.raises(Img2NumError, match="already exists; pass --overwrite"):
        train(tiny_folder, TrainConfig(epochs=1), run_dir=trained_run.path, quiet=True)
    assert {p.name: p.read_bytes() for p in trained_run.path.iterdir()} == before


def test_overwrite_replaces_a_run(tiny_folder, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_folder, TrainConfig(model="mlp", epochs=1), run_dir=run_dir, quiet=True)
    train(tiny_folder, TrainConfig(model="cnn", epochs=1), run_dir=run_dir, overwrite=True, quiet=True)
    assert load_run(run_dir).model_name == "cnn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failure_while_saving_leaves_no_run(tiny_folder, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "loss_curves", broken)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_folder, TrainConfig(epochs=1), run_dir=tmp_path / "run", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_progress_prints_one_line_per_epoch_and_the_kept_epoch(tiny_folder):
    stream = io.StringIO()
    train(tiny_folder, TrainConfig(model="mlp", epochs=2), stream=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("mlp epoch 1/2  loss ")
    assert lines[1].startswith("mlp epoch 2/2  loss ") and "val_loss" in lines[1]
    assert lines[2].startswith("mlp kept the weights of epoch ")


def test_bad_training_input_is_named(tiny_folder, tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros((10, 9, 8, 1), np.uint8), y=np.zeros(10))
    with pytest.raises(Img2NumError, match="val images are 9x8x1 but training images are 8x8x1"):
        train(tiny_folder, TrainConfig(epochs=1), val=other, quiet=True)
    with pytest.raises(Img2NumError, match="unknown model 'nope'"):
        train(tiny_folder, TrainConfig(model="nope"), quiet=True)
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, x=np.zeros((1, 8, 8, 1), np.uint8), y=np.zeros(1))
    with pytest.raises(Img2NumError, match="too few to hold out"):
        train(tiny, TrainConfig(epochs=1), quiet=True)
    with pytest.raises(Img2NumError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)


def test_run_trained_in_memory_saves_and_loads(tiny_folder, tmp_path):
    run = train(tiny_folder, TrainConfig(model="cnn", epochs=1), quiet=True)
    assert run.save(tmp_path / "saved") == tmp_path / "saved"
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        ".img2num",
        "calibration.json",
        "config.json",
        "history.csv",
        "metrics.json",
        "model.keras",
    ]
    test = load_dataset(tiny_folder / "test.npz")
    assert np.array_equal(load_run(tmp_path / "saved").predict(test.x), run.predict(test.x))
    with pytest.raises(Img2NumError, match="already exists"):
        run.save(tmp_path / "saved")


def test_early_stopping_restores_the_best_epoch(tiny_folder):
    # A learning rate this high makes the validation loss jump about, so it stops early.
    config = TrainConfig(model="mlp", epochs=40, patience=3, restore_best=True, lr_patience=0, learning_rate=0.1, seed=0)
    stream = io.StringIO()
    run = train(tiny_folder, config, stream=stream)
    val_losses = [row["val_loss"] for row in run.history]
    best = int(np.argmin(val_losses)) + 1
    assert run.config["epochs_run"] == len(run.history) == best + 3 < 40
    assert stream.getvalue().splitlines()[-2:] == [
        "mlp stopped early: no lower val_loss for 3 epochs",
        f"mlp kept the weights of epoch {best} (val_loss {val_losses[best - 1]:.4g})",
    ]
    assert run.config["best_epoch"] == run.config["weights_epoch"] == best
    # The model holds the best epoch's weights: its validation MSE is that epoch's, not the last.
    assert run.metrics["val"]["mse"] == pytest.approx(val_losses[best - 1], rel=1e-4)
    assert abs(val_losses[-1] - val_losses[best - 1]) > 1e-3 * val_losses[best - 1]


@pytest.mark.parametrize("restore_best", [False, None])
def test_early_stopping_can_keep_the_last_epoch(tiny_folder, restore_best):
    # None, the default, keeps the last epoch's weights when early stopping ends training.
    config = TrainConfig(model="mlp", epochs=40, patience=3, restore_best=restore_best, lr_patience=0, learning_rate=0.1, seed=0)
    stream = io.StringIO()
    run = train(tiny_folder, config, stream=stream)
    last = run.history[-1]
    assert run.config["epochs_run"] == last["epoch"] < 40 and run.config["weights_epoch"] == last["epoch"]
    assert run.config["best_epoch"] < last["epoch"]
    assert stream.getvalue().splitlines()[-1] == f"mlp kept the weights of epoch {last['epoch']} (val_loss {last['val_loss']:.4g})"
    assert run.metrics["val"]["mse"] == pytest.approx(last["val_loss"], rel=1e-4)


def test_by_default_the_epoch_limit_restores_the_best_epoch(tiny_folder):
    config = TrainConfig(model="mlp", epochs=5, patience=10, lr_patience=0, learning_rate=0.1, seed=0)
    assert TrainConfig().restore_best is None
    run = train(tiny_folder, config, quiet=True)
    val_losses = [row["val_loss"] for row in run.history]
    best = int(np.argmin(val_losses)) + 1
    assert len(run.history) == 5 and best < 5
    assert run.config["best_epoch"] == run.config["weights_epoch"] == best
    assert run.metrics["val"]["mse"] == pytest.approx(val_losses[best - 1], rel=1e-4)


def test_plain_settings_train_every_epoch_on_raw_targets(tiny_folder):
    config = TrainConfig.plain(model="mlp", epochs=4, seed=0)
    assert config.is_plain and (config.patience, config.lr_patience, config.standardize_targets) == (0, 0, False)
    assert TrainConfig.plain().epochs == 1000 and not TrainConfig().is_plain
    run = train(tiny_folder, config, quiet=True)
    assert run.config["epochs_run"] == 4 and run.config["weights_epoch"] == 4
    assert run.target_scaling == TargetScaling()
    assert [row["learning_rate"] for row in run.history] == pytest.approx([1e-3] * 4)
    assert run.metrics["val"]["mse"] == pytest.approx(run.history[-1]["val_loss"], rel=1e-4)


def test_target_scaling_round_trips(trained_run, tiny_folder):
    y = load_dataset(tiny_folder / "train.npz").y.astype(np.float64)
    assert trained_run.target_scaling == TargetScaling(float(y.mean()), float(y.std()))
    saved = json.loads((trained_run.path / "config.json").read_text())["target_scaling"]
    assert saved == {"mean": pytest.approx(y.mean()), "std": pytest.approx(y.std())}
    test = load_dataset(tiny_folder / "test.npz")
    raw = trained_run.model.predict(test.x.astype(np.float32), verbose=0).reshape(-1)
    predictions = trained_run.predict(test.x)
    assert np.allclose(predictions, raw * y.std() + y.mean(), rtol=1e-5, atol=1e-3)
    loaded = load_run(trained_run.path)
    assert loaded.target_scaling == trained_run.target_scaling
    assert np.array_equal(loaded.predict(test.x), predictions)
    # History losses are in the targets' units: the model's validation MSE is its epoch's loss.
    assert trained_run.metrics["val"]["mse"] == pytest.approx(
        trained_run.history[trained_run.config["weights_epoch"] - 1]["val_loss"], rel=1e-4
    )


def test_runs_saved_without_target_scaling_still_load(trained_run, tiny_folder, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained_run.path, old)
    config = json.loads((old / "config.json").read_text())
    del config["target_scaling"]
    (old / "config.json").write_text(json.dumps(config))
    loaded = load_run(old)
    assert loaded.target_scaling == TargetScaling()
    test = load_dataset(tiny_folder / "test.npz")
    raw = trained_run.model.predict(test.x.astype(np.float32), verbose=0).reshape(-1)
    assert np.allclose(loaded.predict(test.x), raw, rtol=1e-6, atol=1e-6)
    config["target_scaling"] = {"mean": 1.0, "std": 0.0}
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(Img2NumError, match="config.json: corrupt run configuration \\(target_scaling"):
        load_run(old)


def test_weight_decay_and_augmentation_build_into_the_model():
    model = build_model(TrainConfig(model="cnn_gap", weight_decay=1e-3, augment=True, seed=2), (8, 8, 1))
    assert type(model.optimizer).__name__ == "AdamW"
    assert model.optimizer.weight_decay == pytest.approx(1e-3)
    assert model.get_layer("augmentation").seed == 2 and model.name == "cnn_gap"
    plain = build_model(TrainConfig(model="cnn_gap"), (8, 8, 1))
    assert type(plain.optimizer).__name__ == "Adam"
    assert [layer.name for layer in plain.layers if layer.name == "augmentation"] == []
    with pytest.raises(Img2NumError, match="weight decay must be a non-negative number, got -1"):
        TrainConfig(weight_decay=-1)
    with pytest.raises(Img2NumError, match="patience must be non-negative, got -2"):
        TrainConfig(patience=-2)
