"""Array files: round trips and every way a user's .npz can be wrong."""

import numpy as np
import pytest

from img2num.data import Dataset, load_dataset, load_split_folder, save_npz
from img2num.errors import Img2NumError


def _npz(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def test_round_trip_keeps_arrays(tmp_path):
    x = np.arange(2 * 3 * 4 * 2, dtype=np.uint8).reshape(2, 3, 4, 2)
    path = save_npz(tmp_path / "a.npz", Dataset(x, np.array([1.5, 2.0])))
    loaded = load_dataset(path)
    assert np.array_equal(loaded.x, x)
    assert loaded.y.dtype == np.float32 and list(loaded.y) == [1.5, 2.0]
    assert loaded.source == str(path)


def test_channel_axis_added_and_column_labels_flattened(tmp_path):
    path = _npz(tmp_path / "a.npz", x=np.zeros((3, 5, 6)), y=np.array([[1], [2], [3]]))
    data = load_dataset(path)
    assert data.x.shape == (3, 5, 6, 1)
    assert data.y.shape == (3,)


def test_unlabelled_file_loads_unless_labels_required(tmp_path):
    path = _npz(tmp_path / "a.npz", x=np.zeros((3, 5, 6)))
    assert load_dataset(path).y is None
    with pytest.raises(Img2NumError, match="has no array 'y'"):
        load_dataset(path, require_labels=True)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((2, 4, 4))}, r"has no array 'x' \(found: images\)"),
        ({"x": np.zeros((2, 4))}, r"must have shape \(N, H, W\) or \(N, H, W, C\), got \(2, 4\)"),
        ({"x": np.zeros((0, 4, 4))}, "holds no images"),
        ({"x": np.zeros((3, 4, 4)), "y": np.zeros(2)}, "has 2 labels for 3 images"),
        ({"x": np.zeros((3, 4, 4)), "y": np.array([1.0, np.nan, 2.0])}, "label at index 1 is nan"),
        ({"x": np.zeros((3, 4, 4)), "y": np.array([1.0, 2.0, np.inf])}, "label at index 2 is inf"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array(["a", "b"])}, "labels 'y' must be numbers"),
        ({"x": np.array([["a"]] * 2)}, "images 'x' must be numeric"),
        ({"x": np.full((2, 4, 4), np.nan)}, "NaN or infinite pixel values"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros((2, 2))}, r"labels 'y' must have shape \(N,\)"),
    ],
)
def test_bad_arrays_are_named(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(Img2NumError, match=message) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)


def test_missing_corrupt_truncated_and_folder_paths_are_named(tmp_path):
    with pytest.raises(Img2NumError, match="no such file"):
        load_dataset(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip archive at all")
    with pytest.raises(Img2NumError, match="not a readable .npz file"):
        load_dataset(corrupt)
    truncated = save_npz(tmp_path / "t.npz", Dataset(np.zeros((50, 8, 8), np.uint8), np.zeros(50)))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(Img2NumError, match="not a readable .npz file"):
        load_dataset(truncated)
    with pytest.raises(Img2NumError, match="is a folder"):
        load_dataset(tmp_path)


def test_split_folder_loads_three_splits_and_names_what_is_missing(tmp_path, tiny_folder):
    splits = load_split_folder(tiny_folder)
    assert sorted(splits) == ["test", "train", "val"]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [160, 40, 30]
    with pytest.raises(Img2NumError, match="holds no train.npz"):
        load_split_folder(tmp_path)
    with pytest.raises(Img2NumError, match="no such folder"):
        load_split_folder(tmp_path / "nothing")


def test_an_npz_label_beyond_float32_is_one_message(recwarn):
    y = np.zeros(50)
    y[40] = 1e300
    with pytest.raises(Img2NumError, match=r"label at index 40 is 1e\+300; labels must be finite numbers that fit a 32-bit float"):
        Dataset(np.zeros((50, 4, 4), np.uint8), y, "big.npz")
    assert not [w for w in recwarn if "overflow" in str(w.message)]
