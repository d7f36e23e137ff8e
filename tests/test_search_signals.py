"""The automatic choice's cheaper decisions: the learning-curve bound that stops a candidate which
cannot catch the leader, the weights averaged over the last epochs, and the weighted ensemble."""

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY, require

from img2num import autoselect, export, predict
from img2num.bundle import load_run
from img2num.config import TrainConfig
from img2num.curves import reachable_loss
from img2num.data import generate_points_splits
from img2num.ensemble import ENSEMBLE_MODEL, greedy_weights
from img2num.selection import selection_lines
from img2num.training import train


def test_reachable_loss_extends_the_recent_pace_per_doubling():
    # Best 10 at epoch 2 and 8 at epoch 4: 2 per doubling; 12 epochs ahead is two doublings more,
    # so the bound is 8 - OPTIMISM * 2 * 2.
    losses = [12, 10, 9, 8]
    assert reachable_loss(losses, 12, optimism=1.0) == pytest.approx(8 - 2 * 2)
    assert reachable_loss(losses, 12, optimism=2.0) == 0.0  # never below 0
    assert reachable_loss(losses, 0) == 8.0  # no epochs left: where it stands
    # A flat curve cannot improve; a single epoch says nothing of the pace.
    assert reachable_loss([5, 5, 5, 5], 1000) == 5.0
    assert reachable_loss([5], 1000) == 0.0
    # The best so far counts, not a worse last epoch.
    assert reachable_loss([12, 10, 11, 13], 0) == 10.0


def _trial(name, losses, seconds=0.1):
    history = [{"epoch": i + 1, "val_loss": loss, "seconds": seconds} for i, loss in enumerate(losses)]
    trial = autoselect._Trial(name, None, "scan", history, None, None)
    trial.epoch_seconds = seconds
    return trial


def test_a_candidate_that_cannot_catch_the_leader_is_stopped_and_says_why():
    leader = _trial("pixel_gap", [50, 20, 10, 5])
    val = SimpleNamespace(y=np.zeros(200))  # noise: 5 * sqrt(2 / 200) = 0.5
    inputs = SimpleNamespace(clock=SimpleNamespace(training_left=lambda: 1.0), config=SimpleNamespace(epochs=300), val=val)
    flat = _trial("cnn_gap", [60, 59, 58.5, 58.4])  # 10 more epochs at 0.1 s cannot bring it near 5
    why = autoselect._hopeless(flat, leader, inputs, variance=100.0)
    assert why.startswith("stopped at epoch 4: could reach") and "than pixel_gap's 5 by more than validation noise (0.5)" in why
    steep = _trial("cnn_gap", [60, 30, 15, 7])  # still falling fast: it might
    # Reaching 4.94 at best beats 5 by less than the noise: not worth the time.
    close = _trial("cnn_gap", [5.5, 5.4, 5.35, 5.3])
    assert autoselect._hopeless(close, leader, inputs, variance=100.0) is not None
    assert autoselect._hopeless(steep, leader, inputs, variance=100.0) is None
    assert autoselect._hopeless(leader, leader, inputs, variance=100.0) is None
    assert autoselect._hopeless(_trial("cnn_gap", [60, 59, 58.5]), leader, inputs, variance=100.0) is None  # too few epochs
    # A leader no better than the mean decides nothing (a CNN may sit at the mean at first).
    assert autoselect._hopeless(flat, leader, inputs, variance=5.2) is None
    # A candidate at its epoch cap is done, not stopped.
    capped = SimpleNamespace(clock=inputs.clock, config=SimpleNamespace(epochs=4), val=val)
    assert autoselect._hopeless(flat, leader, capped, variance=100.0) is None


def test_greedy_weights_start_from_the_best_member_and_mix_opposite_errors():
    targets = np.arange(10.0)
    best, worse = targets + 1.0, targets - 1.5
    weights = greedy_weights([worse, best], targets, steps=20)
    assert weights.sum() == pytest.approx(1.0)
    # Errors +1 and -1.5 cancel at weights 0.6 and 0.4.
    assert weights[1] == pytest.approx(0.6) and weights[0] == pytest.approx(0.4)
    useless = greedy_weights([targets, targets + 5.0], targets)
    assert list(useless) == [1.0, 0.0]


def test_average_epochs_keeps_the_mean_of_the_last_epochs_weights(tiny_folder):
    from img2num.callbacks import WeightAverage

    run = train(tiny_folder, TrainConfig(model="pixel_gap", epochs=3, patience=0, lr_patience=0, average_epochs=2), quiet=True)
    assert run.config["train"]["average_epochs"] == 2 and run.config["weights_epoch"] == 3
    model = run.model
    average = WeightAverage(2)
    average.set_model(model)
    snapshots = []
    for epoch, shift in enumerate((1.0, 3.0, 5.0)):
        model.set_weights([np.full_like(w, shift) for w in model.get_weights()])
        snapshots.append(shift)
        average.on_epoch_end(epoch)
    average.on_train_end()
    assert average.averaged == (2, 3)
    assert all(np.allclose(w, 4.0) for w in model.get_weights())  # the mean of epochs 2 and 3


def test_an_ensemble_that_beats_the_winner_is_saved_as_one_model(tmp_path, monkeypatch):
    # Let any two candidates form an ensemble, so the tiny data exercise the whole path.
    monkeypatch.setattr(autoselect, "ENSEMBLE_RANGE", 1e9)
    monkeypatch.setattr(autoselect, "ENSEMBLE_GAIN", -1e9)
    monkeypatch.setattr(autoselect, "greedy_weights", lambda predictions, targets: np.array([0.75, 0.25]))
    splits = generate_points_splits(TINY)
    stream = io.StringIO()
    run = train(splits["train"], TrainConfig(epochs=3, seed=1), val=splits["val"], test=splits["test"], run_dir=tmp_path / "run", stream=stream)
    assert run.model_name == ENSEMBLE_MODEL
    ensemble = run.config["ensemble"]
    assert ensemble["members"] == sorted(ensemble["members"], key=lambda name: name != run.config["selection"]["chosen"])
    assert ensemble["weights"] == [0.75, 0.25] and len(ensemble["members"]) == 2
    record = run.config["selection"]["ensemble"]
    assert record["kept"] is True and record["val_mse"] == pytest.approx(run.metrics["val"]["mse"], rel=1e-4)
    assert "auto: kept the ensemble" in stream.getvalue()
    saved = run.config["selection"]["saved"]
    assert saved["model"] == ENSEMBLE_MODEL and saved["val_mse"] == run.metrics["val"]["mse"]
    assert saved["weights"] == f"ensemble of {ensemble['members'][0]} 0.75 + {ensemble['members'][1]} 0.25"
    assert (tmp_path / "run" / "search.png").stat().st_size > 1000  # the timeline picture
    lines = selection_lines(run.config["selection"])
    assert lines[-1].startswith(f"saved ensemble (ensemble of {ensemble['members'][0]} 0.75")
    # The saved bundle predicts as evaluated.
    loaded = load_run(tmp_path / "run")
    assert loaded.model_name == ENSEMBLE_MODEL
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["ensemble"] == ensemble
    assert np.allclose(predict(loaded, splits["test"].x), run.predict_data(splits["test"]), rtol=1e-5, atol=1e-5)
    test_mse = float(np.mean((predict(loaded, splits["test"].x) - splits["test"].y) ** 2))
    assert test_mse == pytest.approx(run.metrics["test"]["mse"], rel=1e-4)
    # It exports as one ONNX graph like any run.
    onnxruntime = require("onnxruntime")
    export(loaded, tmp_path / "ensemble.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "ensemble.onnx"))
    exported = session.run(None, {session.get_inputs()[0].name: splits["test"].x})[0].reshape(-1)
    assert np.allclose(exported, predict(loaded, splits["test"].x), rtol=1e-4, atol=1e-4)


def test_early_stopping_counts_only_gains_of_a_thousandth_of_the_loss():
    from img2num.callbacks import MIN_IMPROVEMENT, EarlyStop

    def stopped_at(losses):
        stopper = EarlyStop(patience=3, restore_best=False)
        model = SimpleNamespace(stop_training=False, get_weights=lambda: [])
        stopper.set_model(model)
        stopper.on_train_begin()
        for epoch, loss in enumerate(losses):
            stopper.on_epoch_end(epoch, {"val_loss": loss})
            if model.stop_training:
                return epoch + 1, stopper.best_epoch + 1
        return None, stopper.best_epoch + 1

    creeping = [1.0] + [1.0 - (i + 1) * 0.2 * MIN_IMPROVEMENT for i in range(10)]  # 0.02% an epoch
    assert stopped_at(creeping) == (4, 1)  # three epochs without a gain that counts
    falling = [1.0, 0.99, 0.98, 0.97, 0.96]
    assert stopped_at(falling) == (None, 5)
