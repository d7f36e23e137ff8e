"""Prediction from Python: runs and paths, arrays and files, the CSV, broken run folders."""

import json

import numpy as np
import pytest

from img2num.bundle import load_run
from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.prediction import predict, predictions_csv, write_predictions


def test_predict_accepts_runs_paths_arrays_and_files(trained_run, tiny_folder):
    test = load_dataset(tiny_folder / "test.npz")
    expected = trained_run.predict(test.x)
    assert expected.shape == (30,) and expected.dtype == np.float32
    assert np.array_equal(predict(trained_run.path, tiny_folder / "test.npz"), expected)
    assert np.array_equal(predict(trained_run, test.x[..., 0]), expected)
    assert np.array_equal(predict(trained_run, test), expected)


def test_wrong_image_size_is_named(trained_run):
    with pytest.raises(Img2NumError, match="images are 16x16x1 .* this model takes 8x8x1"):
        predict(trained_run, np.zeros((2, 16, 16, 1), np.uint8))


def test_predictions_csv_has_a_row_per_image_and_labels_when_given():
    text = predictions_csv(np.array([1.5, 2.25], np.float32), np.array([1.0, 3.0]))
    assert text.splitlines() == ["index,prediction,label", "0,1.5,1.0", "1,2.25,3.0"]
    assert predictions_csv(np.array([7.0])).splitlines() == ["index,prediction", "0,7.0"]


def test_write_predictions_never_clobbers(tmp_path):
    path = write_predictions(tmp_path / "p.csv", np.array([1.0]))
    with pytest.raises(Img2NumError, match="already exists; pass --overwrite"):
        write_predictions(path, np.array([2.0]))
    assert path.read_text().splitlines()[1] == "0,1.0"
    write_predictions(path, np.array([2.0]), overwrite=True)
    assert path.read_text().splitlines()[1] == "0,2.0"


def test_missing_unfinished_and_corrupt_run_folders_are_named(trained_run, tmp_path):
    with pytest.raises(Img2NumError, match="no such run folder"):
        load_run(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(Img2NumError, match=r"not a finished img2num run \(no model.keras\)"):
        load_run(tmp_path / "half")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"garbage")
    (broken / "config.json").write_text(json.dumps({"preprocessing": {"input_shape": [8, 8, 1], "pixel_scale": 1}}))
    with pytest.raises(Img2NumError, match=r"model.keras: corrupt model file \(not a complete .keras zip archive\)"):
        load_run(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(Img2NumError, match="config.json: corrupt run file"):
        load_run(broken)


@pytest.mark.parametrize("name", ["metrics.json", "history.csv"])
def test_corrupt_records_are_named(trained_run, tmp_path, name):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run.path, copy)
    (copy / name).write_text("epoch,loss\n1,not-a-number\n" if name.endswith(".csv") else "[1,")
    with pytest.raises(Img2NumError, match=f"{name}: corrupt run file"):
        load_run(copy)
