"""Runs trained on image files: the bundle, prediction on files equal to evaluation, the
Python API's inputs, and the command line from a folder of images to predictions."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, run_cli, write_photos
from PIL import Image

from img2num.bundle import load_run
from img2num.cli import main
from img2num.data import ImageFiles
from img2num.evaluation import evaluate
from img2num.metrics import regression_metrics
from img2num.prediction import predict, predict_files


# The run's own metrics come from one batched pass over all its splits (Run.predict_splits); a
# batch of another size may sum in another order, which float32 rounds differently (1.2e-6 seen).
FLOAT32_BATCHES = 1e-5


def _split_rows(run_dir, split):
    with open(run_dir / "split.csv") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def test_bundle_holds_what_prediction_needs(image_run):
    config = json.loads((image_run.path / "config.json").read_text())
    assert config["preprocessing"] == {
        "input_shape": [12, 12, 3],
        "pixel_scale": 1 / 255,
        "input_dtype": "uint8",
        "resize": "none",
        "input_kind": "images",
    }
    assert config["img2num_version"] and config["data"]["rows_read"] == 40
    assert config["data"]["options"]["test_fraction"] == 0.2
    assert {name: config["data"][name]["samples"] for name in ("train", "val", "test")} == {"train": 24, "val": 8, "test": 8}
    assert len(_split_rows(image_run.path, "test")) == 8 and not (image_run.path / "skipped.csv").exists()


def test_prediction_on_image_files_equals_evaluation(image_run, tmp_path):
    rows = _split_rows(image_run.path, "test")
    paths, labels = [r["path"] for r in rows], np.array([float(r["label"]) for r in rows], np.float32)
    with open(tmp_path / "test.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label"], *[[r["path"], r["label"]] for r in rows]])
    loaded = load_run(image_run.path)
    evaluated = evaluate(loaded, tmp_path / "test.csv", output=tmp_path / "e.json")
    done, predictions, bad = predict_files(image_run.path, paths)
    assert done == paths and bad == []
    assert regression_metrics(labels, predictions) == evaluated
    assert evaluated["mse"] == pytest.approx(image_run.metrics["test"]["mse"], rel=FLOAT32_BATCHES)
    # The Python API takes the same images as paths, PIL images or arrays, with the same result.
    assert np.array_equal(predict(loaded, paths), predictions)
    assert np.array_equal(predict(loaded, [Image.open(p) for p in paths]), predictions)
    assert np.array_equal(predict(loaded, [np.asarray(Image.open(p)) for p in paths]), predictions)
    assert np.array_equal(predict(loaded, tmp_path / "test.csv"), predictions)
    assert predict(loaded, paths[0]).shape == (1,)


def test_cli_from_a_folder_of_images_to_predictions(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    size = ["--height", "8", "--width", "8", "--train-size", "40", "--val-size", "10", "--test-size", "6"]
    status, out, _ = run_cli(capsys, "generate", "pts", "--format", "images", *size)
    assert status == 0 and out.splitlines() == ["images: pts/images", "labels: pts/labels.csv", "task: pts/task.json"]
    assert json.loads((tmp_path / "pts" / "task.json").read_text())["task"] == "points"
    status, out, err = run_cli(capsys, "train", "pts", "--epochs", "1", "--run", "run", "--quiet", "--cache-mb", "0")
    assert status == 0 and err == "", err
    config = json.loads(Path("run/config.json").read_text())
    assert config["data"]["train"]["streamed"] is True and config["data"]["test"]["samples"] == 6
    status, out, err = run_cli(
        capsys, "predict", "run", "pts/images/test", "pts/images/val/0.png", "pts/images/test/0.png", "--output", "p.csv"
    )
    # A file named again (here directly after its folder) is predicted once and reported, as a
    # label CSV's duplicate rows are.
    assert status == 1 and err.splitlines() == [
        "img2num: error: pts/images/test/0.png: duplicate of pts/images/test/0.png (named earlier)",
        "img2num: error: 1 of 8 images could not be used; 7 predictions written",
    ]
    rows = list(csv.DictReader(open("p.csv")))
    assert out.strip() == "7 predictions written to p.csv"
    assert [r["path"] for r in rows] == [f"pts/images/test/{i}.png" for i in range(6)] + ["pts/images/val/0.png"]
    status, out, _ = run_cli(capsys, "evaluate", "run", "pts/labels.csv")
    assert status == 0 and "metrics saved in run/evaluations/labels.json" in out
    test_mse = regression_metrics(
        [float(r["label"]) for r in csv.DictReader(open("pts/labels.csv")) if r["split"] == "test"],
        [float(r["prediction"]) for r in rows[:6]],
    )["mse"]
    assert test_mse == pytest.approx(json.loads(Path("run/metrics.json").read_text())["test"]["mse"], rel=1e-5)


def test_predict_reports_bad_files_and_keeps_good_predictions(capsys, image_run, photo_csv, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((12, 12, 3), 40 * index, np.uint8)).save(folder / f"{index}.jpg", quality=95)
    (folder / "sub").mkdir()
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(folder / "sub" / "gray.bmp")
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image file name: ignored")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "large.png")
    status, out, err = run_cli(capsys, "predict", image_run.path, folder, "--output", tmp_path / "p.csv")
    assert status == 1
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["path"] for r in rows] == [str(folder / n) for n in ("0.jpg", "1.jpg", "2.jpg", "sub/gray.bmp")]
    lines = err.strip().splitlines()
    assert lines == [
        f"img2num: error: {folder / 'broken.png'}: not an image file (Pillow cannot identify it)",
        f"img2num: error: {folder / 'large.png'}: image is 20x20; expected 12x12",
        "img2num: error: 2 of 6 images could not be used; 4 predictions written",
    ]
    status, _, err = run_cli(capsys, "predict", image_run.path, tmp_path / "nowhere")
    assert status == 1 and "nowhere: no such file or folder" in one_line_error(err)


def test_skip_bad_trains_on_the_good_rows(capsys, tmp_path):
    csv_path = write_photos(tmp_path / "p", count=12, size=(8, 8))
    with open(csv_path, "a") as handle:
        handle.write("img/missing.png,1\nimg/000.png,nan\n")
    status, _, err = run_cli(capsys, "train", csv_path, "--epochs", "1", "--run", tmp_path / "r", "--quiet")
    # The CSV's own rows are checked before any image is opened, so the label error comes first.
    assert status == 1 and "labels.csv row 15: img/000.png: label 'nan' is not a finite number" in one_line_error(err)
    assert not (tmp_path / "r").exists()
    status, out, err = run_cli(capsys, "train", csv_path, "--epochs", "1", "--run", tmp_path / "r", "--quiet", "--skip-bad")
    assert status == 0, err
    assert err.strip() == f"img2num: skipped 2 of 14 rows; listed in {tmp_path / 'r' / 'skipped.csv'}"
    skipped = list(csv.DictReader(open(tmp_path / "r" / "skipped.csv")))
    assert [(r["where"].split()[-1], r["reason"]) for r in skipped] == [
        ("14", "no such file"),
        ("15", "label 'nan' is not a finite number"),
    ]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"]["rows_skipped"] == 2


@pytest.mark.parametrize(
    "row, message",
    [
        ("img/gone.png,1", "labels.csv row 8: {f}/img/gone.png: no such file"),
        ("img/text.png,1", "labels.csv row 8: {f}/img/text.png: not an image file"),
        ("img/cut.png,1", "labels.csv row 8: {f}/img/cut.png: unreadable or truncated image"),
        ("img/000.png,", "labels.csv row 8: img/000.png: missing 'label'"),
        ("img/000.png,many", "labels.csv row 8: img/000.png: label 'many' is not a number"),
        ("img/000.png,-inf", "labels.csv row 8: img/000.png: label '-inf' is not a finite number"),
        ("img/001.png,3", "labels.csv row 8: img/001.png: duplicate of row 3"),
        ("img/000.png,1e300", "labels.csv row 8: img/000.png: label '1e300' is too large for a 32-bit float"),
        ("img/000.png,1_000", "labels.csv row 8: img/000.png: label '1_000' is not a number; write digits without separators"),
        ("img/000.png,\"1,234\"", "labels.csv row 8: img/000.png: label '1,234' is not a number; write digits without separators"),
    ],
)
def test_bad_rows_on_the_command_line(capsys, tmp_path, row, message):
    csv_path = write_photos(tmp_path / "p", count=6, size=(8, 8))
    (tmp_path / "p" / "img" / "text.png").write_text("text")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "p" / "img" / "cut.png")
    (tmp_path / "p" / "img" / "cut.png").write_bytes((tmp_path / "p" / "img" / "cut.png").read_bytes()[:300])
    with open(csv_path, "a") as handle:
        handle.write(row + "\n")
    status, _, err = run_cli(capsys, "train", csv_path, "--epochs", "1", "--run", tmp_path / "r")
    assert status == 1
    assert message.format(f=tmp_path / "p") in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_unusable_sources_on_the_command_line(capsys, tmp_path, image_run, monkeypatch):
    (tmp_path / "empty").mkdir()
    status, _, err = run_cli(capsys, "train", tmp_path / "empty", "--run", tmp_path / "r")
    assert status == 1 and "empty: is an empty folder" in one_line_error(err)
    status, _, err = run_cli(capsys, "predict", image_run.path, tmp_path / "empty")
    assert status == 1 and "empty: holds no image files" in one_line_error(err)
    (tmp_path / "e.csv").write_text("")
    status, _, err = run_cli(capsys, "evaluate", image_run.path, tmp_path / "e.csv")
    assert status == 1 and "e.csv: is empty" in one_line_error(err)
    csv_path = write_photos(tmp_path / "p", count=4, size=(8, 8))
    status, _, err = run_cli(capsys, "train", csv_path, "--label-column", "score", "--run", tmp_path / "r")
    assert status == 1
    assert "labels.csv: has no column 'score' (found: file, label); choose one with --label-column" in one_line_error(err)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    status, _, err = run_cli(capsys, "train", csv_path, "--run", tmp_path / "r")
    assert status == 1 and "labels.csv row 2: " in err and "over Pillow's limit of 50" in one_line_error(err)
    monkeypatch.undo()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "p" / "img" / "001.png")
    status, _, err = run_cli(capsys, "train", csv_path, "--run", tmp_path / "r")
    assert status == 1
    line = one_line_error(err)
    assert "img/000.png is 8x8 but" in line and "img/001.png is 8x10" in line and "--image-size" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image-size", "64by64"], "argument --image-size: expected HEIGHTxWIDTH such as 64x64, got '64by64'"),
        (["--image-size", "0x5"], "argument --image-size: expected HEIGHTxWIDTH"),
        (["--channels", "2"], "argument --channels: invalid choice: 2"),
        (["--resize", "squash"], "argument --resize: invalid choice: 'squash'"),
        (["--test-fraction", "1"], "argument --test-fraction: expected a number from 0 up to"),
    ],
)
def test_bad_data_option_values(capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        main(["train", "labels.csv", *argv])
    assert caught.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and message in line


def test_recipe_on_image_files(capsys, tmp_path, photo_csv):
    out_dir = tmp_path / "res"
    status, out, err = run_cli(
        capsys, "recipe", "--data", photo_csv, "--epochs", "1", "--out", out_dir, "--quiet", "--test-fraction", "0.2",
        "--models", "mlp",
    )
    assert status == 0, err
    assert out.splitlines()[0].startswith("mlp    test MSE ")
    assert (out_dir / "split.csv").exists() and (out_dir / "mlp" / "model.keras").exists()
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["data"] == str(photo_csv)
    assert summary["models"]["mlp"]["metrics"] == json.loads((out_dir / "mlp" / "metrics.json").read_text())
    assert f"on {photo_csv}" in (out_dir / "comparison.md").read_text()



def test_evaluate_and_predict_a_label_csv_with_bad_rows(capsys, image_run, tmp_path):
    rows = _split_rows(image_run.path, "test")
    lines = ["path,label"] + [f"{r['path']},{r['label']}" for r in rows] + [f"{tmp_path / 'gone.png'},1"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    status, _, err = run_cli(capsys, "evaluate", image_run.path, tmp_path / "t.csv", "--output", tmp_path / "e.json")
    assert status == 1 and "t.csv row 10: " in err and "gone.png: no such file" in one_line_error(err)
    status, out, err = run_cli(capsys, "evaluate", image_run.path, tmp_path / "t.csv", "--output", tmp_path / "e.json", "--skip-bad")
    assert status == 0 and err.strip() == f"img2num: skipped 1 bad row; listed in {tmp_path / 'e.json'}"
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["samples"] == 8 and saved["mse"] == pytest.approx(image_run.metrics["test"]["mse"], rel=FLOAT32_BATCHES)
    assert saved["skipped"] == [f"{tmp_path / 't.csv'} row 10: {tmp_path / 'gone.png'}: no such file"]
    status, out, err = run_cli(capsys, "predict", image_run.path, tmp_path / "t.csv", "--output", tmp_path / "p.csv")
    assert status == 1 and err.strip().splitlines()[-1] == "img2num: error: 1 of 9 images could not be used; 8 predictions written"
    written = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["path"] for r in written] == [r["path"] for r in rows] and list(written[0]) == ["path", "prediction", "label"]


def test_option_combinations_that_cannot_work(capsys, tmp_path):
    status, _, err = run_cli(capsys, "generate", tmp_path / "g", "--format", "images", "--channels", "2")
    assert status == 1 and "image files hold 8-bit images with 1 or 3 channels (--channels 1 or 3)" in one_line_error(err)
    assert not (tmp_path / "g" / "images").exists()
    csv_path = write_photos(tmp_path / "p", count=4, size=(8, 8))
    status, _, err = run_cli(capsys, "train", csv_path, "--resize", "crop", "--run", tmp_path / "r")
    assert status == 1 and "a resize mode needs an image size (--image-size HxW)" in one_line_error(err)
    status, _, err = run_cli(capsys, "predict", tmp_path / "run", csv_path, tmp_path / "x.npz")
    assert status == 1 and "is predicted on alone" in one_line_error(err)


def test_multi_band_tiff_run_predicts_from_its_files(tmp_path):
    import tifffile

    from img2num.config import DataConfig, TrainConfig
    from img2num.training import train

    rng = np.random.default_rng(0)
    rows = ["file,label"]
    for index in range(12):
        bands = rng.integers(0, 3000, (8, 8, 6)).astype(np.uint16)
        tifffile.imwrite(tmp_path / f"{index}.tif", bands, photometric="minisblack", planarconfig="contig")
        rows.append(f"{index}.tif,{bands[..., 2].mean() / 100:.3f}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    run = train(tmp_path / "labels.csv", TrainConfig(epochs=1), data_options=DataConfig(cache_mb=0), quiet=True)
    run.save(tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.preprocessing.input_shape == (8, 8, 6) and len(loaded.preprocessing.band_scale) == 6
    assert loaded.preprocessing == run.preprocessing
    paths = [str(tmp_path / f"{index}.tif") for index in range(12)]
    _, predictions, bad = predict_files(loaded, paths)
    files = ImageFiles(tuple(paths), run.preprocessing.image_spec())
    assert files.spec.dtype == "uint16" and bad == []
    assert np.array_equal(predictions, run.predict_data(files))
    labels = np.array([float(r.split(",")[1]) for r in rows[1:]], np.float32)
    assert evaluate(loaded, tmp_path / "labels.csv") == regression_metrics(labels, predictions)



def test_a_label_too_large_for_float32_is_a_bad_row(capsys, image_run, tmp_path):
    csv_path = write_photos(tmp_path / "p", count=12, size=(12, 12))
    rows = csv_path.read_text().splitlines()
    rows[5] = rows[5].rsplit(",", 1)[0] + ",1e300"
    csv_path.write_text("\n".join(rows) + "\n")
    status, out, err = run_cli(capsys, "train", csv_path, "--epochs", "1", "--run", tmp_path / "r", "--quiet", "--skip-bad")
    assert status == 0, err
    assert err.strip() == f"img2num: skipped 1 of 12 rows; listed in {tmp_path / 'r' / 'skipped.csv'}"
    status, out, err = run_cli(capsys, "predict", image_run.path, csv_path, "--output", tmp_path / "p.csv")
    assert status == 1
    assert err.strip().splitlines() == [
        f"img2num: error: {csv_path} row 6: img/004.png: label '1e300' is too large for a 32-bit float (at most ±3.4e38)",
        "img2num: error: 1 of 12 images could not be used; 11 predictions written",
    ]
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 11


def test_evaluate_output_names_refusals_and_standard_output(capsys, image_run, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(image_run.path, "run")
    rows = _split_rows(image_run.path, "test")
    for name, count in (("a", 8), ("b", 4)):
        Path(name).mkdir()
        Path(name, "labels.csv").write_text("path,label\n" + "".join(f"{r['path']},{r['label']}\n" for r in rows[:count]))
    # Two different labels.csv files: two files, each refreshed by its own data's evaluation.
    for name, saved in (("a", "labels.json"), ("b", "labels-2.json"), ("a", "labels.json")):
        status, out, err = run_cli(capsys, "evaluate", "run", f"{name}/labels.csv")
        assert status == 0 and out.splitlines()[-1] == f"metrics saved in run/evaluations/{saved}", err
    assert json.loads(Path("run/evaluations/labels-2.json").read_text())["samples"] == 4
    # A result the output file refuses is still printed.
    Path("mine.json").write_text("my notes")
    status, out, err = run_cli(capsys, "evaluate", "run", "b/labels.csv", "--output", "mine.json")
    assert status == 1 and out.splitlines()[0].startswith("mse ") and "mine.json: already exists" in one_line_error(err)
    assert Path("mine.json").read_text() == "my notes"
    # --output - is standard output, for evaluate (the JSON record) and predict (the CSV).
    status, out, _ = run_cli(capsys, "evaluate", "run", "b/labels.csv", "--output", "-")
    assert status == 0 and json.loads(out)["samples"] == 4
    status, out, _ = run_cli(capsys, "predict", "run", "b/labels.csv", "--output", "-")
    status_plain, plain, _ = run_cli(capsys, "predict", "run", "b/labels.csv")
    assert status == status_plain == 0 and out == plain and out.startswith("path,prediction,label\n")
    assert not Path("-").exists()


def test_predict_with_a_missing_path_writes_the_good_predictions(capsys, image_run, tmp_path):
    paths = [r["path"] for r in _split_rows(image_run.path, "test")]
    status, out, err = run_cli(capsys, "predict", image_run.path, paths[0], tmp_path / "gone.png", paths[1], "--output", tmp_path / "p.csv")
    assert status == 1 and out.strip() == f"2 predictions written to {tmp_path / 'p.csv'}"
    assert err.strip().splitlines() == [
        f"img2num: error: {tmp_path / 'gone.png'}: no such file or folder",
        "img2num: error: 1 of 3 images could not be used; 2 predictions written",
    ]
    assert [r["path"] for r in csv.DictReader(open(tmp_path / "p.csv"))] == paths[:2]


def test_many_bad_rows_are_summed_up(capsys, image_run, tmp_path):
    path = _split_rows(image_run.path, "test")[0]["path"]
    (tmp_path / "dup.csv").write_text("path\n" + f"{path}\n" * 40)
    status, out, err = run_cli(capsys, "predict", image_run.path, tmp_path / "dup.csv", "--output", tmp_path / "p.csv")
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 12
    assert lines[9] == f"img2num: error: {tmp_path / 'dup.csv'} row 12: {path}: duplicate of row 2"
    assert lines[10:] == [
        "img2num: error: and 29 more not listed: 29 x duplicate of row N",
        "img2num: error: 39 of 40 images could not be used; 1 predictions written",
    ]


def test_other_bit_depths_predict_as_the_8_bit_image(capsys, image_run, tmp_path):
    import tifffile

    pixels = np.random.default_rng(5).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a8.png")
    tifffile.imwrite(tmp_path / "a16.tif", pixels.astype(np.uint16) * 257, photometric="rgb")
    tifffile.imwrite(tmp_path / "af.tif", pixels.astype(np.float32) / 255, photometric="rgb")
    tifffile.imwrite(tmp_path / "hdr.tif", pixels.astype(np.float32), photometric="rgb")  # 0..255 as floats
    names = ["a8.png", "a16.tif", "af.tif", "hdr.tif"]
    status, out, err = run_cli(capsys, "predict", image_run.path, *[tmp_path / n for n in names])
    rows = list(csv.DictReader(out.splitlines()))
    assert [Path(r["path"]).name for r in rows] == names[:3]
    assert rows[0]["prediction"] == rows[1]["prediction"] == rows[2]["prediction"]
    assert status == 1 and "hdr.tif: floating-point pixels range from 0 to 255; only 0 to 1" in err
    # evaluate decodes the same way.
    (tmp_path / "l.csv").write_text("file,label\na16.tif,1\naf.tif,1\n")
    assert evaluate(image_run, tmp_path / "l.csv")["mse"] == pytest.approx((float(rows[0]["prediction"]) - 1) ** 2)
