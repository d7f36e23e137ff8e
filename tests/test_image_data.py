"""Image files and label CSVs as data: sources, columns, splits, channels, sizes, streaming, the
bundle's preprocessing, and every bad row named with its file and row."""

import csv
import json

import numpy as np
import pytest
import tifffile
from conftest import write_photos
from PIL import Image

from img2num.preprocessing import Preprocessing
from img2num.config import DataConfig, PointsConfig
from img2num.data import (
    Dataset,
    ImageFiles,
    generate_points_splits,
    read_image_table,
    read_label_table,
    resolve_splits,
    split_records,
    write_image_folder,
)
from img2num.errors import Img2NumError


def _csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_folder_and_its_csv_read_alike_and_columns_can_be_chosen(photo_csv, tmp_path):
    by_folder = resolve_splits(photo_csv.parent)
    by_file = resolve_splits(photo_csv)
    assert [len(s) for s in by_folder.values()] == [32, 8] and by_folder.rows == 40
    assert np.array_equal(by_folder["train"].x, by_file["train"].x)
    assert by_folder["train"].x.shape == (32, 12, 12, 3) and by_folder["train"].x.dtype == np.uint8
    # A CSV anywhere, naming images anywhere by absolute path, with its own column names.
    table = read_label_table(photo_csv)
    elsewhere = _csv(tmp_path / "elsewhere.csv", ["path", "value"], [[p, y] for p, y in zip(table.paths, table.labels)])
    data = read_image_table(elsewhere).data
    assert isinstance(data, Dataset) and len(data) == 40
    assert np.array_equal(data.y, table.labels) and data.paths[0] == table.paths[0]
    # The label is the mean of the red channel / 10, as the writer made it.
    assert data.y[3] == pytest.approx(data.x[3, ..., 0].mean() / 10, abs=1e-3)
    renamed = _csv(tmp_path / "renamed.csv", ["image", "score"], [[p, y] for p, y in zip(table.paths, table.labels)])
    with pytest.raises(Img2NumError, match=r"renamed.csv: has no column 'file' or 'path' \(found: image, score\); choose one with --path-column"):
        read_image_table(renamed)
    chosen = read_image_table(renamed, DataConfig(path_column="image", label_column="score")).data
    assert np.array_equal(chosen.x, data.x)


def test_split_column_is_respected(tmp_path):
    csv_path = write_photos(tmp_path / "p", count=20, split=True)
    splits = resolve_splits(csv_path, options=DataConfig(test_fraction=0.5))  # ignored: the column decides
    assert {name: len(split) for name, split in splits.items()} == {"train": 12, "val": 4, "test": 4}
    assert splits["test"].paths[0].endswith("img/016.png")


def test_seeded_fractions_and_the_split_record(photo_csv):
    options = DataConfig(test_fraction=0.25)
    first = resolve_splits(photo_csv, val_fraction=0.25, seed=3, options=options)
    again = resolve_splits(photo_csv, val_fraction=0.25, seed=3, options=options)
    other = resolve_splits(photo_csv, val_fraction=0.25, seed=4, options=options)
    assert [len(s) for s in first.values()] == [20, 10, 10]
    assert first["test"].paths == again["test"].paths != other["test"].paths
    assert not set(first["test"].paths) & set(first["train"].paths)
    text = split_records(first)["split.csv"]
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 40 and list(rows[0]) == ["path", "label", "split"]
    assert sorted(r["path"] for r in rows if r["split"] == "test") == sorted(first["test"].paths)
    # The record is itself a label CSV that gives the same splits back.
    assert split_records(resolve_splits(photo_csv, seed=3)) != {}


def test_channels_follow_the_images_unless_chosen(tmp_path):
    gray = write_photos(tmp_path / "g", count=6, mode="L")
    assert resolve_splits(gray, val_fraction=0.5)["train"].image_shape == (12, 12, 1)
    mixed = write_photos(tmp_path / "m", count=6, mode="L")
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "m" / "img" / "000.png")
    assert resolve_splits(mixed, val_fraction=0.5)["train"].image_shape == (12, 12, 3)  # any colour: colour
    colour = write_photos(tmp_path / "c", count=6)
    splits = resolve_splits(colour, val_fraction=0.5, options=DataConfig(channels=1))
    assert splits["train"].image_shape == (12, 12, 1)
    with pytest.raises(Img2NumError, match="channels must be 1 or 3"):
        DataConfig(channels=2)


def test_mixed_sizes_need_an_image_size(tmp_path):
    csv_path = write_photos(tmp_path / "p", count=6)
    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(tmp_path / "p" / "img" / "004.jpg")
    rows = list(csv.reader(open(csv_path)))
    rows[5][0] = "img/004.jpg"
    _csv(csv_path, rows[0], rows[1:])
    with pytest.raises(Img2NumError) as caught:
        resolve_splits(csv_path, val_fraction=0.5)
    message = str(caught.value)
    assert "img/000.png is 12x12 but" in message and "img/004.jpg is 24x30" in message
    assert "--image-size" in message
    with pytest.raises(Img2NumError, match=r"row 6: .*img/004.jpg: image is 24x30; bringing it to 12x12 would distort it; choose --resize"):
        resolve_splits(csv_path, val_fraction=0.5, options=DataConfig(image_size=(12, 12)))
    for mode in ("stretch", "crop"):
        splits = resolve_splits(csv_path, val_fraction=0.5, options=DataConfig(image_size=(8, 8), resize=mode))
        assert splits["train"].image_shape == (8, 8, 3)
        assert Preprocessing.for_data(splits["train"]).resize == mode
    with pytest.raises(Img2NumError, match="a resize mode needs an image size"):
        DataConfig(resize="crop")


def test_16_bit_and_multi_band_images_are_scaled_per_band(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for index in range(8):
        bands = rng.integers(0, 1000, (6, 6, 5)).astype(np.uint16) + np.arange(5, dtype=np.uint16) * 10000
        tifffile.imwrite(tmp_path / f"{index}.tif", bands, photometric="minisblack", planarconfig="contig")
        rows.append([f"{index}.tif", index])
    splits = resolve_splits(_csv(tmp_path / "labels.csv", ["file", "label"], rows), val_fraction=0.25)
    train = splits["train"]
    assert train.image_shape == (6, 6, 5) and train.x.dtype == np.uint16
    pre = Preprocessing.for_data(train)
    assert pre.input_kind == "images" and pre.input_dtype == "uint16" and len(pre.band_offset) == 5
    scaled = pre.apply(train.x)
    assert np.allclose(scaled.reshape(-1, 5).mean(axis=0), 0, atol=1e-4)
    assert np.allclose(scaled.reshape(-1, 5).std(axis=0), 1, atol=1e-3)
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    # Streaming gets the same per-band scaling from its statistics, without keeping pixels.
    streamed = resolve_splits(tmp_path / "labels.csv", val_fraction=0.25, options=DataConfig(cache_mb=0))["train"]
    assert isinstance(streamed, ImageFiles)
    assert np.allclose(Preprocessing.for_data(streamed).band_offset, pre.band_offset)
    assert np.allclose(Preprocessing.for_data(streamed).band_scale, pre.band_scale)
    with pytest.raises(Img2NumError, match="has 5 bands; --channels 1 or 3 applies to grayscale and colour"):
        resolve_splits(tmp_path / "labels.csv", options=DataConfig(channels=3))
    gray16 = Image.fromarray(np.full((6, 6), 30000, np.uint16))
    gray16.save(tmp_path / "g.png")
    data = read_image_table(_csv(tmp_path / "g.csv", ["file", "label"], [["g.png", 1]])).data
    assert data.x.dtype == np.uint16 and Preprocessing.for_data(data).pixel_scale == pytest.approx(1 / 65535)


def test_streaming_source_matches_memory(photo_csv):
    memory = resolve_splits(photo_csv)
    disk = resolve_splits(photo_csv, options=DataConfig(cache_mb=0, workers=2))
    assert isinstance(disk["train"], ImageFiles) and isinstance(memory["train"], Dataset)
    assert disk["train"].image_shape == memory["train"].image_shape and len(disk["val"]) == 8
    assert np.array_equal(disk["train"].to_dataset().x, memory["train"].x)
    assert np.array_equal(np.concatenate(list(disk["train"].chunks(max_bytes=1000))), memory["train"].x)
    relabelled = disk["train"].with_labels(np.zeros(32))
    assert relabelled.y.sum() == 0 and disk["train"].y.sum() > 0


def test_streaming_batches_are_seeded_and_complete(photo_csv):
    from img2num.data.stream import ImageBatches

    disk = resolve_splits(photo_csv, options=DataConfig(cache_mb=0))["train"]
    pre = Preprocessing.for_data(disk)
    batches = ImageBatches(disk, pre, batch_size=10, shuffle=True, seed=5)
    assert len(batches) == 4
    seen = [batches[i] for i in range(len(batches))]
    batches.on_epoch_end()
    assert [b[0].shape for b in seen] == [(10, 12, 12, 3)] * 3 + [(2, 12, 12, 3)]
    labels = np.concatenate([b[1] for b in seen])
    assert sorted(labels.tolist()) == sorted(disk.y.tolist())
    again = ImageBatches(disk, pre, batch_size=10, shuffle=True, seed=5)
    assert np.array_equal(again[0][1], seen[0][1])
    assert np.array_equal(again[0][0], seen[0][0])
    # Each epoch (Keras calls on_epoch_begin) has a new order, the same one for the same seed.
    batches.on_epoch_begin()
    second_epoch = [batches[i][1] for i in range(len(batches))]
    again.on_epoch_end()
    again.on_epoch_begin()
    assert all(np.array_equal(again[i][1], second_epoch[i]) for i in range(len(again)))
    assert not np.array_equal(np.concatenate(second_epoch), labels)
    batches.on_epoch_end()
    full = pre.apply(disk.to_dataset().x)
    for image, label in zip(*seen[1]):
        assert any(np.array_equal(image, other) and label == y for other, y in zip(full, disk.y))
    again.on_epoch_end()


def test_old_preprocessing_records_still_load():
    old = Preprocessing.from_dict({"input_shape": [8, 8, 1], "pixel_scale": 1.0})
    assert old == Preprocessing((8, 8, 1), 1.0)
    assert old.resize == "none" and old.input_kind == "arrays" and old.band_offset is None
    assert old.image_spec().shape == (8, 8, 1)


def test_points_as_image_files(tmp_path):
    config = PointsConfig(height=8, width=8, train=12, val=4, test=3, seed=2)
    arrays = generate_points_splits(config)
    paths = write_image_folder(tmp_path / "pts", arrays)
    rows = list(csv.DictReader(open(paths["labels"])))
    assert len(rows) == 19 and rows[0] == {"file": "images/train/00.png", "label": rows[0]["label"], "split": "train"}
    splits = resolve_splits(tmp_path / "pts")
    for name in ("train", "val", "test"):
        assert np.array_equal(splits[name].x, arrays[name].x * 255)
        assert np.array_equal(splits[name].y, arrays[name].y)
    with pytest.raises(Img2NumError, match="already exists; pass --overwrite"):
        write_image_folder(tmp_path / "pts", arrays)
    two = generate_points_splits(PointsConfig(channels=2, train=3, val=0, test=0))
    with pytest.raises(Img2NumError, match="train images are 2-channel uint8; image files hold 8-bit images with 1 or 3"):
        write_image_folder(tmp_path / "p2", two)
    assert not (tmp_path / "p2").exists()


def _bad_rows(tmp_path):
    """A label CSV with four good rows and one of each bad row, and the message each gives."""
    folder = write_photos(tmp_path / "bad", count=4).parent
    img = folder / "img"
    (img / "text.png").write_text("no pixels here")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(img / "cut.png")
    (img / "cut.png").write_bytes((img / "cut.png").read_bytes()[:300])
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(img / "ok.png")
    rows = [
        ["img/000.png", 1], ["img/001.png", 2], ["img/002.png", 3], ["img/003.png", 4],
        ["img/gone.png", 1],
        ["img/text.png", 1],
        ["img/cut.png", 1],
        ["img/ok.png", ""],
        ["img/ok.png", "abc"],
        ["img/ok.png", "inf"],
        ["img/000.png", 5],
    ]
    messages = [
        "row 6: {f}/img/gone.png: no such file",
        "row 7: {f}/img/text.png: not an image file",
        "row 8: {f}/img/cut.png: unreadable or truncated image",
        "row 9: img/ok.png: missing 'label'",
        "row 10: img/ok.png: label 'abc' is not a number",
        "row 11: img/ok.png: label 'inf' is not a finite number",
        "row 12: img/000.png: duplicate of row 2",
    ]
    return _csv(folder / "labels.csv", ["file", "label"], rows), [m.format(f=folder) for m in messages]


def test_every_bad_row_is_named_and_skip_bad_lists_them(tmp_path):
    csv_path, messages = _bad_rows(tmp_path)
    with pytest.raises(Img2NumError) as caught:
        read_image_table(csv_path)
    assert str(caught.value).startswith(f"{csv_path} row ")  # the first bad row, by row number
    table = read_image_table(csv_path, DataConfig(skip_bad=True))
    assert len(table.data) == 4 and table.total == 11
    got = [row.message for row in table.skipped]
    assert len(got) == 7
    for line, expected in zip(got, messages):
        assert line.startswith(str(csv_path)) and expected in line, (line, expected)


def test_each_bad_row_alone_stops_reading(tmp_path):
    csv_path, messages = _bad_rows(tmp_path)
    rows = list(csv.reader(open(csv_path)))
    for index, expected in enumerate(messages):
        one = _csv(tmp_path / f"one{index}.csv", rows[0], rows[1:5] + [rows[5 + index]])
        one_dir = csv_path.parent / one.name
        one.rename(one_dir)
        with pytest.raises(Img2NumError) as caught:
            read_image_table(one_dir)
        text = str(caught.value)
        expected = expected.replace("row 12", "row 6").replace(f"row {6 + index}", "row 6")
        assert text.startswith(f"{one_dir} row 6: ") and expected.split(": ", 1)[1] in text, text


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty; expected a header row naming the file and label columns"),
        ("file,label\n", "has a header but no rows"),
        ("file,score\na.png,1\n", "has no column 'label' or 'value' (found: file, score); choose one with --label-column"),
    ],
)
def test_unusable_csv_files(tmp_path, content, message):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(Img2NumError) as caught:
        read_image_table(tmp_path / "labels.csv")
    assert str(caught.value) == f"{tmp_path / 'labels.csv'}: {message}"


def test_empty_and_ambiguous_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Img2NumError, match="empty: is an empty folder"):
        resolve_splits(tmp_path / "empty")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.csv").write_text("file,label\n")
    (tmp_path / "two" / "b.csv").write_text("file,label\n")
    with pytest.raises(Img2NumError, match=r"holds several CSV files \(a.csv, b.csv\) and no labels.csv"):
        resolve_splits(tmp_path / "two")


def test_image_over_the_pixel_limit_is_a_bad_row(tmp_path, monkeypatch):
    csv_path = write_photos(tmp_path / "p", count=4)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "p" / "img" / "big.png")
    with open(csv_path, "a") as handle:
        handle.write("img/big.png,1\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Img2NumError, match=r"labels.csv row 6: .*big.png: image is 40x40 = 1600 pixels, over Pillow's limit of 1000"):
        read_image_table(csv_path)


def test_four_band_8_bit_tiffs_train_on_four_bands(tmp_path):
    rows = []
    for index in range(6):
        bands = np.random.default_rng(index).integers(0, 256, (6, 6, 4)).astype(np.uint8)
        tifffile.imwrite(tmp_path / f"{index}.tif", bands, photometric="minisblack", planarconfig="contig")
        rows.append([f"{index}.tif", index])
    splits = resolve_splits(_csv(tmp_path / "labels.csv", ["file", "label"], rows), val_fraction=0.5)
    assert splits["train"].image_shape == (6, 6, 4)
    assert len(Preprocessing.for_data(splits["train"]).band_scale) == 4


def test_float_pixels_outside_0_to_1_are_a_bad_row_in_training(tmp_path):
    # A float TIFF of 2-498 is refused in training as in prediction; with --skip-bad it is skipped.
    rows = []
    for index in range(4):
        tifffile.imwrite(tmp_path / f"{index}.tif", np.full((6, 6), index / 4, np.float32))
        rows.append([f"{index}.tif", index])
    tifffile.imwrite(tmp_path / "big.tif", np.linspace(2, 498, 36, dtype=np.float32).reshape(6, 6))
    rows.append(["big.tif", 9])
    csv_path = _csv(tmp_path / "labels.csv", ["file", "label"], rows)
    with pytest.raises(Img2NumError) as caught:
        read_image_table(csv_path)
    assert str(caught.value) == (
        f"{csv_path} row 6: {tmp_path / 'big.tif'}: floating-point pixels range from 2 to 498; "
        "only 0 to 1 (black to white) are read as floating-point pixels"
    )
    table = read_image_table(csv_path, DataConfig(skip_bad=True))
    assert len(table.data) == 4 and [row.path for row in table.skipped] == [str(tmp_path / "big.tif")]
    assert float(table.data.to_dataset().x.max()) == 0.75


def test_skip_bad_skips_a_five_band_tiff_among_grey_images(tmp_path):
    csv_path = write_photos(tmp_path / "p", count=5, mode="L")
    tifffile.imwrite(tmp_path / "p" / "img" / "five.tif", np.zeros((12, 12, 5), np.uint8), photometric="minisblack", planarconfig="contig")
    with open(csv_path, "a") as handle:
        handle.write("img/five.tif,1\n")
    with pytest.raises(Img2NumError, match="five.tif has 5 bands but .* has 1"):
        read_image_table(csv_path)
    table = read_image_table(csv_path, DataConfig(skip_bad=True))
    assert len(table.data) == 5 and table.data.image_shape == (12, 12, 1)
    assert [row.message for row in table.skipped] == [f"{csv_path} row 7: {tmp_path / 'p' / 'img' / 'five.tif'}: has 5 bands; this data takes 1"]
