"""img2num's compiled loop and prediction on JAX: the same numbers as Keras' fit and predict,
callbacks per epoch, one compilation per shape."""

import keras
import numpy as np
import pytest

from img2num.preprocessing import Preprocessing
from img2num.config import TrainConfig
from img2num.data import Dataset
from img2num.data.order import batch_indices, batch_order_rng, epoch_order
from img2num.data.stream import fit_batches
from img2num.loop import JaxLoop, choose_mode, lowered_pooling, predict
from img2num.models import list_models
from img2num.fitting import build_model

SHAPE = (8, 8, 1)


def tiny_data(samples: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = (rng.random((samples, *SHAPE)) < 0.4).astype(np.uint8)
    return Dataset(x, x.reshape(samples, -1).sum(axis=1).astype(np.float32) / 4, "tiny")


def fresh_model(name: str, seed: int = 0):
    keras.utils.set_random_seed(seed)
    return build_model(TrainConfig(model=name, learning_rate=0.01), SHAPE)


def max_difference(first, second) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(first, second))


# resnet, the slowest to compile, is compared with fit on PyTorch in test_backends.py.
@pytest.mark.parametrize("name", [spec.name for spec in list_models() if spec.name != "resnet"])
def test_loop_trains_every_model_as_fit_does(name):
    train, val = tiny_data(80, 1), tiny_data(30, 2)
    preprocessing = Preprocessing.for_data(train)
    by_fit, by_loop = fresh_model(name), fresh_model(name)
    by_loop.set_weights(by_fit.get_weights())
    fitted = fit_batches(by_fit, train, val, preprocessing, 32, seed=5, epochs=2, verbose=0)
    looped = JaxLoop(by_loop).fit(
        preprocessing.apply(train.x), train.y, (preprocessing.apply(val.x), val.y), epochs=2, rng=batch_order_rng(5)
    )
    scale = max(float(np.max(np.abs(w))) for w in by_fit.get_weights())
    assert max_difference(by_fit.get_weights(), by_loop.get_weights()) <= 1e-5 * scale
    for key in ("loss", "val_loss"):
        assert looped.history[key] == pytest.approx(fitted.history[key], rel=1e-5)
    # The weights moved: two epochs of training are compared, not two untouched models.
    assert max_difference(by_fit.get_weights(), fresh_model(name).get_weights()) > 1e-4


def test_scan_and_step_agree_and_the_mode_follows_convolutions():
    train = tiny_data(100, 3)
    x = Preprocessing.for_data(train).apply(train.x)
    models = {}
    for mode in ("scan", "step"):
        models[mode] = fresh_model("mlp")
        JaxLoop(models[mode], mode).fit(x, train.y, epochs=3, batch_size=16, rng=batch_order_rng(0))
    assert max_difference(models["scan"].get_weights(), models["step"].get_weights()) < 1e-5
    assert [choose_mode(fresh_model(name)) for name in ("mlp", "pixel_gap", "cnn", "cnn_gap", "resnet")] == [
        "scan", "scan", "step", "step", "step"
    ]
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        JaxLoop(models["scan"], "fast")


def test_batches_follow_the_seeded_order():
    order = epoch_order(batch_order_rng(7), 10)
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    batches = batch_indices(order, 4)
    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10)) and all(list(b) == sorted(b) for b in batches)
    assert list(epoch_order(None, 4)) == [0, 1, 2, 3]


class CallLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")
        if epoch == 1:
            self.model.stop_training = True
            self.model.optimizer.learning_rate = 0.5

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_callbacks_fire_every_epoch_and_can_stop_and_change_the_learning_rate():
    train, val = tiny_data(64, 4), tiny_data(16, 5)
    preprocessing = Preprocessing.for_data(train)
    model, log = fresh_model("mlp"), CallLog()
    history = JaxLoop(model).fit(
        preprocessing.apply(train.x), train.y, (preprocessing.apply(val.x), val.y), epochs=5, callbacks=[log]
    )
    assert log.calls == [
        "train_begin",
        "epoch_begin 0",
        "epoch_end 0 ['loss', 'val_loss']",
        "epoch_begin 1",
        "epoch_end 1 ['loss', 'val_loss']",
        "train_end",
    ]
    assert len(history.history["loss"]) == 2
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.5)


def test_prediction_matches_keras_and_compiles_once_per_shape():
    model = fresh_model("cnn")
    x = np.random.default_rng(0).random((300, *SHAPE)).astype(np.float32)
    assert np.allclose(predict(model, x, 128), model.predict(x, batch_size=128, verbose=0), atol=1e-5)
    compiled = model._img2num_predict
    sizes = compiled._cache_size()
    # 300 = 128 + 128 + 44, the last padded to 128: one shape, now compiled.
    assert sizes == 1
    predict(model, x, 128)
    predict(model, x[:200], 128)  # 128 + 72, padded to 128
    assert compiled._cache_size() == sizes
    predict(model, x[:60], 128)  # one batch: padded to 64
    predict(model, x[:33], 128)  # also 64
    assert compiled._cache_size() == sizes + 1
    assert predict(model, x[:0], 128).shape == (0, 1)


def test_lowered_pooling_equals_keras_pooling():
    x = np.random.default_rng(1).normal(size=(2, 9, 7, 3)).astype(np.float32)
    layers = [
        keras.layers.MaxPooling2D(2),
        keras.layers.AveragePooling2D(2),
        keras.layers.MaxPooling2D(3, padding="same"),  # 9x7 is no multiple of 3: Keras' own way
        keras.layers.MaxPooling2D(2, strides=1),  # overlapping windows: Keras' own way
    ]
    import jax

    def squares(values):
        return (layer(values) ** 2).sum()

    for layer in layers:
        expected, expected_gradient = layer(x), jax.grad(squares)(x)
        with lowered_pooling():
            lowered, lowered_gradient = layer(x), jax.grad(squares)(x)
        assert lowered.shape == expected.shape and np.allclose(lowered, expected, atol=1e-6), layer.name
        assert np.allclose(lowered_gradient, expected_gradient, atol=1e-5), layer.name
        assert np.abs(expected_gradient).sum() > 0
