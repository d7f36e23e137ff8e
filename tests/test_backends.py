"""Backends: the auto rule, the one-line errors, and models that train and predict alike on JAX
and PyTorch."""

import json

import numpy as np
import pytest

from conftest import needs, one_line_error, run_cli, run_python
from img2num import backends, jax_ops
from img2num.backends import choose_backend, preferred_backend, select_backend
from img2num.bundle import load_run
from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.models import list_models
from img2num.registry import model_spec


def specs(*names):
    return [model_spec(name) for name in names]


@needs("torch")
def test_auto_rule_picks_torch_only_where_the_registry_says():
    assert preferred_backend(specs("resnet"), (64, 64, 3)) == "torch"
    assert preferred_backend(specs("resnet"), (48, 48, 1)) == "torch"
    assert preferred_backend(specs("resnet"), (32, 32, 3)) == "jax"
    assert preferred_backend(specs("cnn_gap"), (64, 64, 3)) == "torch"
    assert preferred_backend(specs("cnn_gap"), (32, 32, 1)) == "jax"
    assert preferred_backend(specs("mlp", "cnn", "pixel_gap"), (128, 128, 3)) == "jax"
    # Pretrained backbones run on JAX at any size.
    assert preferred_backend(specs("backbone:efficientnet_lite0", "finetune:x"), (224, 224, 3)) == "jax"
    # One model that prefers PyTorch decides for a process that trains several.
    assert preferred_backend(specs("pixel_gap", "resnet"), (64, 64, 3)) == "torch"
    assert [spec.name for spec in list_models() if spec.torch_from_pixels] == ["cnn_gap", "resnet"]


def test_auto_respects_the_user_and_a_loaded_keras(monkeypatch):
    assert choose_backend("torch", specs("mlp"), (16, 16, 1)) == "torch"
    monkeypatch.setattr("img2num.startup.USER_KERAS_BACKEND", "tensorflow")
    assert choose_backend("auto", specs("resnet"), (64, 64, 3)) == "tensorflow"
    monkeypatch.setattr("img2num.startup.USER_KERAS_BACKEND", None)
    # The tests run Keras on JAX, loaded already: auto keeps it.
    import keras  # noqa: F401

    assert choose_backend("auto", specs("resnet"), (64, 64, 3)) == "jax"
    with pytest.raises(Img2NumError, match="unknown backend 'theano'; known: auto, jax, torch, tensorflow"):
        choose_backend("theano", specs("mlp"), (16, 16, 1))


@needs("torch")
def test_a_selected_backend_holds_for_later_auto_choices(tmp_path):
    """`compare` selects one backend for all its models; each model's own "auto" then keeps it
    (pixel_gap alone would prefer JAX)."""
    code = """
        from img2num.backends import choose_backend, select_backend
        from img2num.models import model_spec
        pixel_gap, cnn_gap = model_spec("pixel_gap"), model_spec("cnn_gap")
        assert choose_backend("auto", [pixel_gap], (64, 64, 3)) == "jax"
        select_backend(choose_backend("auto", [pixel_gap, cnn_gap], (64, 64, 3)))
        print(choose_backend("auto", [pixel_gap], (64, 64, 3)))
    """
    env_free = run_python(code, "", tmp_path)
    assert env_free.stdout.split() == ["torch"]


@needs("torch")
def test_switching_a_loaded_keras_is_refused():
    import keras  # noqa: F401

    select_backend("jax")
    with pytest.raises(Img2NumError, match="Keras already runs on jax in this process; set KERAS_BACKEND=torch"):
        select_backend("torch")


def test_a_missing_backend_is_one_line(tiny_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends, "_installed", lambda package: package != "tensorflow")
    status, _, err = run_cli(capsys, "train", tiny_folder, "--backend", "tensorflow", "--run", tmp_path / "run")
    assert status == 1
    assert one_line_error(err) == (
        "img2num: error: the tensorflow backend is not installed: no Python package 'tensorflow' "
        "(pip install 'img2num[bench]')"
    )
    assert not (tmp_path / "run").exists()


def test_a_trainer_that_cannot_run_is_one_line(photo_csv, tmp_path, capsys):
    status, _, err = run_cli(
        capsys, "train", photo_csv, "--trainer", "scan", "--cache-mb", "0", "--epochs", "1", "--run", tmp_path / "run"
    )
    assert status == 1
    assert one_line_error(err) == (
        "img2num: error: trainer 'scan' needs the JAX backend and data in memory, not data streamed from disk; "
        "use --trainer auto or fit"
    )


@needs("torch")
def test_every_model_trains_alike_on_jax_and_torch(tmp_path):
    """From the same initial weights and batches, one epoch on PyTorch (Keras' fit, on the
    channels-first twin where auto picks it) and on JAX (img2num's loop) end at the same
    predictions."""
    code = """
        import sys
        import keras
        import numpy as np
        from img2num.preprocessing import Preprocessing
        from img2num.config import TrainConfig
        from img2num.data import Dataset
        from img2num.data.order import batch_order_rng
        from img2num.models import list_models
        from img2num.fitting import build_model, choose_trainer, run_epochs

        rng = np.random.default_rng(0)
        x = (rng.random((64, 8, 8, 1)) < 0.4).astype(np.uint8)
        train = Dataset(x, x.reshape(64, -1).sum(axis=1).astype(np.float32) / 4, "tiny")
        probe = rng.random((10, 8, 8, 1)).astype(np.float32)
        preprocessing = Preprocessing.for_data(train)
        for spec in list_models():
            keras.utils.set_random_seed(0)
            model = build_model(TrainConfig(model=spec.name, learning_rate=0.01), (8, 8, 1))
            if sys.argv[0] == "-c" and keras.backend.backend() == "jax":
                model.save(f"{spec.name}.keras")
                from img2num.loop import JaxLoop

                JaxLoop(model).fit(preprocessing.apply(train.x), train.y, epochs=1, rng=batch_order_rng(3))
            else:
                model.set_weights(keras.saving.load_model(f"{spec.name}.keras", compile=False).get_weights())
                trainer = choose_trainer("auto", model, {"train": train})
                assert trainer == ("fit_channels_first" if spec.name in ("cnn_gap", "resnet") else "fit"), trainer
                run_epochs(model, trainer, train, train, preprocessing, batch_size=32, epochs=1, seed=3, callbacks=[])
            np.save(f"{spec.name}-{keras.backend.backend()}.npy", keras.ops.convert_to_numpy(model(probe, training=False)))
    """
    run_python(code, "jax", tmp_path)
    run_python(code, "torch", tmp_path)
    for spec in list_models():
        on_jax, on_torch = np.load(tmp_path / f"{spec.name}-jax.npy"), np.load(tmp_path / f"{spec.name}-torch.npy")
        assert np.allclose(on_jax, on_torch, rtol=1e-4, atol=1e-4 * np.abs(on_jax).max()), spec.name


@needs("torch")
def test_a_bundle_predicts_the_same_on_the_other_backend(trained_run, tiny_folder, tmp_path, capsys):
    test = load_dataset(tiny_folder / "test.npz")
    code = f"""
        import json
        from img2num.bundle import load_run
        from img2num.data import load_dataset
        run = load_run({str(trained_run.path)!r})
        print(json.dumps(run.predict(load_dataset({str(tiny_folder / 'test.npz')!r}).x).tolist()))
    """
    on_torch = json.loads(run_python(code, "torch", tmp_path).stdout.splitlines()[-1])
    assert np.allclose(on_torch, trained_run.predict(test.x), rtol=1e-5, atol=1e-4)

    # And back: trained on PyTorch, predicting on JAX.
    torch_run = tmp_path / "torch-run"
    train = f"from img2num.cli import main; main(['train', {str(tiny_folder)!r}, '--model', 'cnn', '--epochs', '2', '--run', {str(torch_run)!r}, '--quiet'])"
    run_python(train, "torch", tmp_path)
    config = json.loads((torch_run / "config.json").read_text())
    assert config["backend"] == "torch" and config["trainer"] == "fit"
    status, out, _ = run_cli(capsys, "evaluate", torch_run, tiny_folder / "test.npz", "--output", tmp_path / "eval.json")
    assert status == 0
    assert json.loads((tmp_path / "eval.json").read_text())["mse"] == pytest.approx(
        json.loads((torch_run / "metrics.json").read_text())["test"]["mse"], rel=1e-5
    )
    assert load_run(torch_run).predict(test.x).shape == (30,)


def test_compilation_cache_folder_follows_its_variable_xdg_and_home(monkeypatch, tmp_path):
    monkeypatch.delenv(backends.CACHE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backends.compilation_cache_folder() == tmp_path / "xdg" / "img2num" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert backends.compilation_cache_folder() == tmp_path / "home" / ".cache" / "img2num" / "jax"
    monkeypatch.setenv(backends.CACHE_VARIABLE, str(tmp_path / "mine"))
    assert backends.compilation_cache_folder() == tmp_path / "mine"
    for off in ("off", "0", "", "False"):
        monkeypatch.setenv(backends.CACHE_VARIABLE, off)
        assert backends.compilation_cache_folder() is None


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 5])
def test_numpy_uniform_is_jax_uniform_bit_for_bit(seed):
    import jax
    import jax.numpy as jnp

    key = jnp.array([seed % 2**32, (seed * 2654435761) % 2**32], jnp.uint32)
    for shape, low, high in [((3, 3, 3, 32), -0.2, 0.2), ((256, 1), -0.15, 0.15), ((7,), 0.0, 1.0), ((301, 300), -1.7, 3.1)]:
        expected = np.asarray(jax.random.uniform(key, shape, jnp.float32, low, high))
        drawn = jax_ops.threefry_uniform(np.asarray(key), shape, low, high)
        assert drawn.dtype == np.float32 and drawn.shape == shape
        assert np.array_equal(drawn, expected)


def test_models_built_on_jax_get_keras_own_initial_weights():
    import jax
    import keras
    from keras.src.backend.jax import random

    from img2num.config import TrainConfig
    from img2num.fitting import build_model

    assert jax_ops.use_numpy_uniform()
    assert random.uniform._img2num_numpy
    weights = {}
    for way, uniform in (("numpy", random.uniform), ("jax", random.uniform.__wrapped__)):
        random.uniform, patched = uniform, random.uniform
        try:
            keras.utils.set_random_seed(3)
            weights[way] = [w.numpy() for w in build_model(TrainConfig(model="cnn"), (12, 12, 2)).weights]
        finally:
            random.uniform = patched
    assert len(weights["numpy"]) == len(weights["jax"]) > 4
    assert all(np.array_equal(a, b) for a, b in zip(weights["numpy"], weights["jax"]))
    # Inside compiled code the key is traced: JAX draws, as before.
    key = jax.numpy.array([1, 2], jax.numpy.uint32)
    traced = jax.jit(lambda k: random.uniform((5,), seed=k))(key)
    assert np.array_equal(traced, jax.random.uniform(key, (5,)))
