"""Channels-first copies of convolutional models (img2num.layout): which models convert, the copy
computes the same function, and on PyTorch it trains to the same weights as Keras' fit."""

import keras
import numpy as np
import pytest

from conftest import needs, one_line_error, run_cli, run_python
from img2num.config import TrainConfig
from img2num.layout import channels_first_twin, convertible, copy_state
from img2num.models import list_models
from img2num.fitting import build_model

SHAPE = (12, 10, 3)


def fresh_model(name: str, augment: bool = False):
    keras.utils.set_random_seed(0)
    return build_model(TrainConfig(model=name, augment=augment), SHAPE)


def test_only_models_whose_layers_ignore_the_layout_convert():
    assert {spec.name: convertible(fresh_model(spec.name)) for spec in list_models()} == {
        "mlp": False,  # Flatten orders the pixels by layout
        "cnn": False,
        "cnn_gap": True,
        "resnet": True,
        "pixel_gap": False,  # Dense on the channel axis of feature maps
    }
    # Augmentation layers are not on the list: such a model trains as it is.
    assert not convertible(fresh_model("cnn_gap", augment=True))
    with pytest.raises(ValueError, match="model 'mlp' has layers that depend on the layout"):
        channels_first_twin(fresh_model("mlp"))


@pytest.mark.parametrize("name", ["cnn_gap", "resnet"])
def test_the_twin_holds_the_same_weights_and_computes_the_same(name):
    model = fresh_model(name)
    twin = channels_first_twin(model)
    assert twin.input_shape == (None, 3, 12, 10)
    assert [w.shape for w in twin.weights] == [w.shape for w in model.weights]
    twin.set_weights(model.get_weights())
    images = np.random.default_rng(1).random((6, *SHAPE)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    got = keras.ops.convert_to_numpy(twin(images.transpose(0, 3, 1, 2), training=False))
    assert got.shape == (6, 1)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_copy_state_carries_weights_and_the_optimizer():
    source, target = fresh_model("cnn_gap"), fresh_model("cnn_gap")
    images = np.random.default_rng(2).random((8, *SHAPE)).astype(np.float32)
    source.train_on_batch(images, np.arange(8, dtype=np.float32))
    source.optimizer.learning_rate.assign(0.125)
    copy_state(source, target)
    for mine, theirs in zip(target.weights, source.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))
    assert int(target.optimizer.iterations.numpy()) == 1
    assert float(target.optimizer.learning_rate.numpy()) == 0.125
    assert len(target.optimizer.variables) == len(source.optimizer.variables) > 2 * len(source.trainable_weights)
    for mine, theirs in zip(target.optimizer.variables, source.optimizer.variables):
        assert np.array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))


def test_channels_first_asked_for_on_jax_is_one_line(tiny_folder, tmp_path, capsys):
    status, _, err = run_cli(
        capsys, "train", tiny_folder, "--model", "cnn_gap", "--trainer", "fit_channels_first", "--run", tmp_path / "run"
    )
    assert status == 1
    assert one_line_error(err) == (
        "img2num: error: trainer 'fit_channels_first' needs the PyTorch backend and a model made of "
        "convolutions, pooling and layers that act per channel, not the jax backend; use --trainer auto or fit"
    )
    assert not (tmp_path / "run").exists()


@needs("torch")
def test_on_torch_the_twin_trains_as_fit_does(tmp_path):
    """Two epochs from the same weights and batches: Keras' fit on the model and on its
    channels-first twin end at the same weights, losses and optimizer state; the twin predicts
    as the model does; auto picks the twin for the convertible models only, and refuses it for
    the others."""
    code = """
        import json
        import keras
        import numpy as np
        from img2num.preprocessing import Preprocessing
        from img2num.config import TrainConfig
        from img2num.data import Dataset
        from img2num.errors import Img2NumError
        from img2num.layout import predict_channels_first
        from img2num.fitting import build_model, choose_trainer, run_epochs

        rng = np.random.default_rng(0)
        x = (rng.random((80, 12, 10, 3)) * 255).astype(np.uint8)
        train = Dataset(x[:60], x[:60].reshape(60, -1).mean(axis=1).astype(np.float32) / 50, "tiny")
        val = Dataset(x[60:], x[60:].reshape(20, -1).mean(axis=1).astype(np.float32) / 50, "tiny")
        preprocessing = Preprocessing.for_data(train)
        result = {}
        for name in ("mlp", "cnn_gap", "resnet"):
            keras.utils.set_random_seed(0)
            model = build_model(TrainConfig(model=name), (12, 10, 3))
            result[name] = {"auto": choose_trainer("auto", model, {"train": train})}
            if name == "mlp":
                try:
                    choose_trainer("fit_channels_first", model, {"train": train})
                except Img2NumError as error:
                    result[name]["error"] = str(error)
                continue
            start = model.get_weights()
            for trainer in ("fit", "fit_channels_first"):
                model.set_weights(start)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
                history = keras.callbacks.History()
                run_epochs(model, trainer, train, val, preprocessing, batch_size=16, epochs=2, seed=4, callbacks=[history])
                np.savez(f"{name}-{trainer}.npz", *model.get_weights())
                result[name][trainer] = {
                    "loss": history.history["loss"],
                    "val_loss": history.history["val_loss"],
                    "iterations": int(model.optimizer.iterations.numpy()),
                }
            np.savez(f"{name}-start.npz", *start)
            # Prediction by the twin (Run.predict on PyTorch) follows the model's current weights.
            images = preprocessing.apply(x)
            result[name]["prediction_gaps"] = []
            for weights in (model.get_weights(), start):
                model.set_weights(weights)
                expected = model.predict(images, verbose=0)
                gap = np.abs(predict_channels_first(model, images, 32) - expected).max() / np.abs(expected).max()
                result[name]["prediction_gaps"].append(float(gap))
        print(json.dumps(result))
    """
    import json

    result = json.loads(run_python(code, "torch", tmp_path).stdout.splitlines()[-1])
    assert result["mlp"]["auto"] == "fit"
    assert "not model 'mlp', whose layers depend on the layout" in result["mlp"]["error"]
    for name in ("cnn_gap", "resnet"):
        assert result[name]["auto"] == "fit_channels_first"
        by_fit, by_twin = result[name]["fit"], result[name]["fit_channels_first"]
        assert by_fit["iterations"] == by_twin["iterations"] == 8  # 2 epochs of 4 batches
        for key in ("loss", "val_loss"):
            assert by_twin[key] == pytest.approx(by_fit[key], rel=1e-5)
        weights = {kind: list(np.load(tmp_path / f"{name}-{kind}.npz").values()) for kind in ("start", "fit", "fit_channels_first")}
        scale = max(float(np.abs(w).max()) for w in weights["fit"])
        assert max(float(np.abs(a - b).max()) for a, b in zip(weights["fit"], weights["fit_channels_first"])) <= 1e-5 * scale
        assert max(result[name]["prediction_gaps"]) <= 1e-5
        # The weights moved: trained models are compared, not untouched ones.
        assert max(float(np.abs(a - b).max()) for a, b in zip(weights["fit"], weights["start"])) > 1e-4
