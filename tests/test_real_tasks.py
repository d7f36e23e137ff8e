"""The real-image tasks (digits, counting, haze): shapes, labels, the files written, and the same
seed giving the same bytes. Skipped when scikit-learn or scikit-image is missing (failed under CI)."""

import csv
import hashlib
import json

import numpy as np
import pytest
from conftest import needs

from img2num.data.real import (
    HAZE_TEST_PHOTOS,
    HAZE_TRAIN_PHOTOS,
    MAX_BETA,
    MAX_OBJECTS,
    build_real_task,
    build_real_task_with_scenes,
    write_real_task,
)
from img2num.data.files import write_image_folder
from img2num.data.splits import resolve_splits
from img2num.errors import Img2NumError

pytestmark = needs("sklearn", "skimage")

SIZES = (12, 4, 6)
SHAPES = {"digits": (32, 32, 1), "counting": (48, 48, 3), "haze": (48, 48, 3)}


@pytest.mark.parametrize("task", ["digits", "counting", "haze"])
def test_builds_splits_of_the_right_shape_and_labels(task):
    splits = build_real_task(task, SIZES, seed=5)
    assert {name: len(data) for name, data in splits.items()} == dict(zip(("train", "val", "test"), SIZES))
    for name, data in splits.items():
        assert data.x.shape[1:] == SHAPES[task] and data.x.dtype == np.uint8
        assert data.y.dtype == np.float32 and np.isfinite(data.y).all()
        assert data.source == f"{task}:{name}"
        assert data.x.std() > 5  # not blank
    labels = np.concatenate([data.y for data in splits.values()])
    if task == "digits":
        assert set(labels) <= set(range(10))
    elif task == "counting":
        assert set(labels) <= set(range(MAX_OBJECTS + 1)) and len(set(labels)) > 3
    else:
        assert labels.min() >= 0 and labels.max() <= MAX_BETA


@pytest.mark.parametrize("task", ["digits", "counting", "haze"])
def test_same_seed_same_images_other_seed_other_images(task):
    first, again, other = (build_real_task(task, (3, 2, 2), seed=s, side=32) for s in (1, 1, 2))
    for name in first:
        assert first[name].x.tobytes() == again[name].x.tobytes()
        assert np.array_equal(first[name].y, again[name].y)
    assert first["train"].x.tobytes() != other["train"].x.tobytes()


def test_writes_a_folder_train_reads_with_its_splits(tmp_path):
    paths = write_real_task(tmp_path / "counting", "counting", (5, 3, 2), seed=0, side=32)
    with open(paths["labels"], newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["split"] for row in rows] == ["train"] * 5 + ["val"] * 3 + ["test"] * 2
    assert all((tmp_path / "counting" / row["file"]).is_file() for row in rows)
    info = json.loads(paths["task"].read_text())
    assert info["task"] == "counting" and info["reference_mse"] is None
    splits = resolve_splits(tmp_path / "counting")
    built = build_real_task("counting", (5, 3, 2), seed=0, side=32)
    for name in ("train", "val", "test"):
        data = splits[name].to_dataset()
        assert np.array_equal(data.x, built[name].x) and np.allclose(data.y, built[name].y)
    digest = hashlib.sha256(b"".join((tmp_path / "counting" / row["file"]).read_bytes() for row in rows)).hexdigest()
    again = write_real_task(tmp_path / "again", "counting", (5, 3, 2), seed=0, side=32)
    assert hashlib.sha256(
        b"".join((again["labels"].parent / row["file"]).read_bytes() for row in rows)
    ).hexdigest() == digest


def test_haze_tests_on_photos_kept_out_of_training():
    assert not set(HAZE_TEST_PHOTOS) & set(HAZE_TRAIN_PHOTOS)


def test_haze_folder_names_each_crop_s_photograph_as_its_scene(tmp_path):
    paths = write_real_task(tmp_path / "haze", "haze", (12, 4, 6), seed=1, side=16)
    with open(paths["labels"], newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["file", "label", "split", "scene"]
    assert {row["scene"] for row in rows if row["split"] != "test"} <= set(HAZE_TRAIN_PHOTOS)
    assert {row["scene"] for row in rows if row["split"] == "test"} <= set(HAZE_TEST_PHOTOS)
    assert len({row["scene"] for row in rows if row["split"] == "train"}) > 1
    # The scenes come with the same images as without them.
    built, scenes = build_real_task_with_scenes("haze", (12, 4, 6), seed=1, side=16)
    assert np.array_equal(built["val"].x, build_real_task("haze", (12, 4, 6), seed=1, side=16)["val"].x)
    assert scenes["test"] == [row["scene"] for row in rows if row["split"] == "test"]
    with pytest.raises(Img2NumError, match="column 'scene' needs one value per test image, got 5"):
        write_image_folder(tmp_path / "bad", built, columns={"scene": {**scenes, "test": scenes["test"][:5]}})


def test_unknown_tasks_and_impossible_sizes_are_named():
    with pytest.raises(Img2NumError, match="unknown real-image task 'faces'; known: digits, counting, haze"):
        build_real_task("faces")
    with pytest.raises(Img2NumError, match="the digits set has 1797 images"):
        build_real_task("digits", (1500, 300, 100))
    with pytest.raises(Img2NumError, match="sizes must be three counts"):
        build_real_task("haze", (0, 0, 0))
