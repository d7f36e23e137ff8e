"""Prediction from Python: runs and paths, arrays and files, the CSV, broken run folders."""

import json

import numpy as np
import pytest
from PIL import Image

from img2num.bundle import load_run
from img2num.data import load_dataset
from img2num.errors import Img2NumError
from img2num.prediction import predict, predict_paths, predictions_csv, write_predictions


def test_predict_accepts_runs_paths_arrays_and_files(trained_run, tiny_folder):
    test = load_dataset(tiny_folder / "test.npz")
    expected = trained_run.predict(test.x)
    assert expected.shape == (30,) and expected.dtype == np.float32
    assert np.array_equal(predict(trained_run.path, tiny_folder / "test.npz"), expected)
    assert np.array_equal(predict(trained_run, test.x[..., 0]), expected)
    assert np.array_equal(predict(trained_run, test), expected)


def test_predict_paths_predicts_as_predict_and_reports_bad_files(image_run, tmp_path):
    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    for index in range(3):
        Image.fromarray(np.full((12, 12, 3), 40 * index, np.uint8)).save(folder / f"{index}.png")
    Image.fromarray(np.full((12, 12), 90, np.uint8)).save(folder / "sub" / "gray.bmp")
    (folder / "broken.png").write_text("not an image")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "large.png")
    good = [str(folder / name) for name in ("0.png", "1.png", "2.png", "sub/gray.bmp")]

    result = predict_paths(image_run.path, [folder, tmp_path / "nowhere"])
    assert result.paths == good
    assert result.predictions.dtype == np.float32
    assert np.array_equal(result.predictions, predict(image_run, good))
    assert result.labels is None and result.bounds is None
    assert sorted(row.message for row in result.bad) == [
        f"{folder / 'broken.png'}: not an image file (Pillow cannot identify it)",
        f"{folder / 'large.png'}: image is 20x20; expected 12x12",
        f"{tmp_path / 'nowhere'}: no such file or folder",
    ]

    # A label CSV: its labels come back, and a bad row is reported instead of stopping.
    (folder / "labels.csv").write_text("file,label\n0.png,1.5\nmissing.png,2\nsub/gray.bmp,3\n")
    result = predict_paths(image_run, folder / "labels.csv")
    assert np.array_equal(result.predictions, predict(image_run, [good[0], good[3]]))
    assert np.array_equal(result.labels, [1.5, 3.0])
    assert [(row.where, row.path) for row in result.bad] == [(f"{folder / 'labels.csv'} row 3", str(folder / "missing.png"))]


def test_predict_paths_on_npz_gives_labels_and_intervals(trained_run, tiny_folder):
    test = load_dataset(tiny_folder / "test.npz")
    result = predict_paths(trained_run, [tiny_folder / "test.npz"], interval=0.9)
    expected = predict(trained_run, tiny_folder / "test.npz", interval=0.9)
    assert np.array_equal(result.predictions, expected.prediction)
    assert np.array_equal(result.bounds[0], expected.lower) and np.array_equal(result.bounds[1], expected.upper)
    assert np.array_equal(result.labels, test.y) and result.paths is None and result.bad == []
    with pytest.raises(Img2NumError, match="test.npz: an .npz or CSV file is predicted on alone"):
        predict_paths(trained_run, [tiny_folder / "test.npz", tiny_folder / "val.npz"])


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


def test_binary_arrays_and_their_png_files_predict_alike_on_either_kind_of_run(trained_run, tiny_folder, tmp_path):
    # `img2num generate` stores the points task as 0/1 in .npz files and as 0/255 in PNG files.
    from img2num.data import write_image_folder
    from img2num.preprocessing import Preprocessing

    test = load_dataset(tiny_folder / "test.npz")
    assert test.x.max() == 1
    write_image_folder(tmp_path / "pngs", {"test": test})
    from_arrays = trained_run.predict(test.x)  # the run was trained on the 0/1 arrays
    from_files = predict(trained_run, tmp_path / "pngs" / "images" / "test")
    np.testing.assert_allclose(from_files, from_arrays, rtol=1e-5, atol=1e-4)
    # A run trained on the PNG files (8-bit, scaled by 1/255) takes the 0/1 arrays the same way.
    files_run = Preprocessing((8, 8, 1), 1 / 255, input_dtype="uint8", input_kind="images")
    np.testing.assert_array_equal(files_run.apply(test.x), files_run.apply(test.x * np.uint8(255)))
    assert files_run.apply(test.x).max() == 1.0


def test_a_file_named_twice_is_reported_as_a_duplicate(capsys, trained_run, tmp_path, monkeypatch):
    from conftest import run_cli

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255, "L").save("a.png")
    status, out, err = run_cli(capsys, "predict", trained_run.path, "a.png", "a.png", tmp_path / "a.png")
    assert status == 1
    assert [row.split(",")[0] for row in out.splitlines()] == ["path", "a.png"]
    assert err.splitlines() == [
        "img2num: error: a.png: duplicate of a.png (named earlier)",
        f"img2num: error: {tmp_path / 'a.png'}: duplicate of a.png (named earlier)",
        "img2num: error: 2 of 3 images could not be used; 1 predictions written",
    ]
