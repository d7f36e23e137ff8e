"""Near-copies between training and held-out images: crops of a few photos warn, independent
images do not, runs and comparisons record the shares, and splits the user drew are left alone."""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import require, run_cli
from img2num import compare
from img2num.config import DataConfig
from img2num.data import Dataset, ImageFiles, measure_near_copies, near_copy_record, resolve_splits, write_image_folder
from img2num.metrics import NEAR_COPY_SHARE, near_copy_warning

SIDE = 32


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A photo-like colour texture in [0, 1]: noise smoothed at several scales."""
    image = np.zeros((side, side, 3), np.float32)
    for cells in (4, 10, 25):
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((side, side), Image.BICUBIC))
        image += smooth[..., None] * rng.uniform(0.5, 1.5, 3).astype(np.float32) / np.sqrt(cells)
    return (image - image.min()) / (image.max() - image.min())


def _hazy_crop(rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    """A crop of 30-50% of `photo` at a random place, resized to SIDE, under haze of random strength."""
    box = int(rng.uniform(0.3, 0.5) * photo.shape[0])
    top, left = rng.integers(0, photo.shape[0] - box + 1, size=2)
    bands = [Image.fromarray(photo[top : top + box, left : left + box, c], mode="F") for c in range(3)]
    crop = np.stack([np.asarray(band.resize((SIDE, SIDE), Image.BILINEAR)) for band in bands], axis=2)
    clear = rng.uniform(0.3, 1.0)
    image = crop * clear + rng.uniform(0.6, 1.0) * (1 - clear) + 0.02 * rng.standard_normal(crop.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def crops_of_three_photos(train: int = 200, val: int = 60, seed: int = 0) -> dict[str, Dataset]:
    """Train and validation crops of the same 3 photos: the haze benchmark's case in small."""
    rng = np.random.default_rng(seed)
    photos = [_texture(rng, 160) for _ in range(3)]
    x = np.stack([_hazy_crop(rng, photos[rng.integers(3)]) for _ in range(train + val)])
    y = rng.uniform(0, 1, train + val).astype(np.float32)
    return {"train": Dataset(x[:train], y[:train]), "val": Dataset(x[train:], y[train:])}


def independent_images(train: int = 200, val: int = 60, seed: int = 1) -> dict[str, Dataset]:
    """Every image from a photo of its own."""
    rng = np.random.default_rng(seed)
    x = np.stack([_hazy_crop(rng, _texture(rng, 64)) for _ in range(train + val)])
    y = rng.uniform(0, 1, train + val).astype(np.float32)
    return {"train": Dataset(x[:train], y[:train]), "val": Dataset(x[train:], y[train:])}


def test_crops_of_few_photos_have_near_copies_and_warn():
    record = near_copy_record(crops_of_three_photos())
    assert record["val"] >= 0.5 and "test" not in record
    assert record["warning"].startswith(f"{record['val']:.0%} of validation images have a near-copy in training")
    assert "detail of 24px grey thumbnails" in record["method"]


def test_independent_images_have_no_near_copies():
    record = near_copy_record(independent_images())
    assert record["val"] < NEAR_COPY_SHARE and "warning" not in record


def test_handwritten_digits_stay_silent():
    require("sklearn")
    from img2num.data.real import build_real_task

    record = near_copy_record(build_real_task("digits", sizes=(400, 100, 100), seed=0))
    assert record["val"] < NEAR_COPY_SHARE and record["test"] < NEAR_COPY_SHARE and "warning" not in record


def test_the_test_split_is_measured_too_and_the_same_seed_gives_the_same_shares():
    shared = crops_of_three_photos(train=200, val=120)
    fresh = independent_images(train=10, val=40)
    splits = {"train": shared["train"], "val": fresh["val"], "test": shared["val"]}
    record = measure_near_copies(splits, seed=4)
    assert record["val"] < NEAR_COPY_SHARE <= record["test"]
    assert measure_near_copies(splits, seed=4) == record
    assert near_copy_warning(record).startswith(f"{record['test']:.0%} of test images have a near-copy")


def test_the_warning_names_the_shares_and_the_fix():
    text = near_copy_warning({"val": 0.87, "test": 0.5, "method": "m"})
    assert text == (
        "87% of validation images and 50% of test images have a near-copy in training (crops or frames "
        "of the same scenes?): validation and test scores will flatter the model on new scenes; keep "
        "scenes apart with --group-column NAME or --time-column NAME (docs/groups.md)"
    )
    assert near_copy_warning({"val": NEAR_COPY_SHARE - 0.01, "test": 0.0}) is None
    assert near_copy_warning({"val": 0.02, "test": 0.3}).startswith("30% of test images have")


def test_a_group_or_time_column_skips_the_measurement():
    splits = crops_of_three_photos()
    assert near_copy_record(splits, types.SimpleNamespace(group_column="scene", time_column=None)) is None
    assert near_copy_record(splits, types.SimpleNamespace(group_column=None, time_column="taken")) is None


@pytest.mark.filterwarnings("default::img2num.errors.Img2NumWarning")
def test_a_run_records_the_shares_and_the_cli_prints_the_warning(capsys, tmp_path):
    splits = crops_of_three_photos()
    np.savez(tmp_path / "crops.npz", x=splits["train"].x, y=splits["train"].y)
    np.savez(tmp_path / "val.npz", x=splits["val"].x, y=splits["val"].y)
    expected = measure_near_copies(splits, seed=0)
    status, _, err = run_cli(
        capsys, "train", tmp_path / "crops.npz", "--val", tmp_path / "val.npz", "--model", "pixel_gap",
        "--epochs", "1", "--quiet", "--run", tmp_path / "run",
    )
    assert status == 0, err
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["near_copies"]
    assert recorded == {**expected, "warning": near_copy_warning(expected)}
    # First, before training; the labels are noise, so the weak-fit warning follows.
    assert err.splitlines()[0] == f"img2num: warning: {recorded['warning']}"


@pytest.mark.filterwarnings("default::img2num.errors.Img2NumWarning")
def test_a_split_column_skips_the_measurement(capsys, tmp_path):
    write_image_folder(tmp_path / "data", crops_of_three_photos(train=60, val=20))
    status, _, err = run_cli(
        capsys, "train", tmp_path / "data", "--model", "pixel_gap", "--epochs", "1", "--quiet", "--run", tmp_path / "run"
    )
    assert status == 0 and "near-copy" not in err  # (the labels are noise: the weak-fit warning stays)
    assert "near_copies" not in json.loads((tmp_path / "run" / "config.json").read_text())["data"]


def test_compare_warns_once_for_all_its_models_and_seeds(tmp_path):
    splits = crops_of_three_photos(train=160, val=80)
    held_out = splits["val"]
    val, test = (Dataset(held_out.x[part], held_out.y[part]) for part in (slice(0, 40), slice(40, 80)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = compare(
            splits["train"], ["pixel_gap"], val=val, test=test, out_dir=tmp_path / "cmp",
            epochs=1, seeds=2, keep_runs=False, quiet=True,
        )
    near = [w for w in caught if "near-copy" in str(w.message)]
    assert len(near) == 1 and str(near[0].message) == summary["data"]["near_copies"]["warning"]
    assert summary["data"]["near_copies"]["val"] >= NEAR_COPY_SHARE
    assert summary["data"]["near_copies"]["warning"] in (tmp_path / "cmp" / "report.md").read_text()


def test_images_streamed_from_disk_give_the_shares_of_the_same_images_in_memory(tmp_path):
    splits = crops_of_three_photos(train=80, val=30)
    write_image_folder(tmp_path / "data", splits)
    streamed = resolve_splits(tmp_path / "data", options=DataConfig(cache_mb=0, workers=1))
    assert isinstance(streamed["train"], ImageFiles)
    assert measure_near_copies(streamed) == measure_near_copies(splits)
