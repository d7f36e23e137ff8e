"""GeoTIFF rasters: training from map points (chips, bad points, --bands), and prediction maps
(GeoTIFF and CSV, nodata windows, stride, refusals, the preview)."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import needs, one_line_error, run_cli

from img2num.config import DataConfig, TrainConfig
from img2num.errors import Img2NumError

pytestmark = needs("rasterio")

CRS = "EPSG:32652"
LEFT, TOP, PIXEL = 500000.0, 4000000.0, 10.0
TILE = 8


def write_raster(path, pixels, nodata=None, crs=CRS):
    """Write bands (C, H, W) as a GeoTIFF with 10 m pixels whose top-left corner is (LEFT, TOP)."""
    import rasterio
    from rasterio.transform import from_origin

    count, height, width = pixels.shape
    with rasterio.open(
        path, "w", driver="GTiff", height=height, width=width, count=count, dtype=pixels.dtype.name,
        crs=crs, transform=from_origin(LEFT, TOP, PIXEL, PIXEL), nodata=nodata,
    ) as target:
        target.write(pixels)
    return path


def centre(row, column):
    """Map coordinates of the centre of raster pixel (row, column)."""
    return LEFT + (column + 0.5) * PIXEL, TOP - (row + 0.5) * PIXEL


def write_points(path, points, raster=None):
    """A label CSV of (row, column, label) points, as map coordinates; `raster` adds a file column."""
    with open(path, "w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["x", "y", "label"] + (["file"] if raster else []))
        for row, column, label in points:
            rows.writerow([*centre(row, column), label] + ([raster] if raster else []))
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 64x64 uint8 scene, nodata 0 in its top-left 16x16 corner, and 40 labelled points."""
    folder = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, (1, 64, 64), dtype=np.uint8)
    pixels[:, :16, :16] = 0
    write_raster(folder / "scene.tif", pixels, nodata=0)
    points = [(int(r), int(c), round(float(pixels[0, r - 4 : r + 4, c - 4 : c + 4].mean()) / 10, 3))
              for r, c in rng.integers(20, 60, (40, 2))]
    points = list({(r, c): (r, c, v) for r, c, v in points}.values())  # one point per pixel
    write_points(folder / "points.csv", points)
    return folder, pixels


@pytest.fixture(scope="module")
def raster_run(scene):
    from img2num.training import train

    folder, _ = scene
    return train(
        folder / "points.csv", TrainConfig(model="mlp", epochs=2, seed=1),
        data_options=DataConfig(raster=str(folder / "scene.tif"), tile=TILE), run_dir=folder / "run", quiet=True,
    )


def test_training_from_points_through_the_cli_records_the_input(scene, tmp_path, capsys):
    folder, _ = scene
    table = tmp_path / "points.csv"
    rows = list(csv.reader(open(folder / "points.csv")))
    write_points(table, [(8, 8, 1.0), (62, 40, 2.0)])  # on nodata, and a chip across the edge
    with open(table, "a", newline="") as handle:
        csv.writer(handle).writerows(rows[1:])
    status, out, err = run_cli(
        capsys, "train", table, "--raster", folder / "scene.tif", "--tile", TILE, "--epochs", 1, "--model", "mlp",
        "--run", tmp_path / "run", "--quiet", "--skip-bad",
    )
    assert status == 0, err
    preprocessing = json.loads((tmp_path / "run" / "config.json").read_text())["preprocessing"]
    assert preprocessing["input_shape"] == [TILE, TILE, 1] and preprocessing["input_dtype"] == "uint8"
    assert preprocessing["source_bands"] == 1 and preprocessing["pixel_size"] == [PIXEL, PIXEL]
    status, _, err = run_cli(
        capsys, "train", table, "--raster", folder / "scene.tif", "--tile", TILE, "--epochs", 1, "--run", tmp_path / "r2", "--quiet",
    )
    assert status != 0
    x, y = centre(8, 8)
    assert one_line_error(err).endswith(f"points.csv row 2: {folder / 'scene.tif'}: point ({x:g}, {y:g}) lies on nodata")


def test_bad_points_have_one_line_reasons(scene, tmp_path):
    from img2num.data.rasters import read_point_table

    folder, pixels = scene
    table = write_points(tmp_path / "points.csv", [(30, 30, 1.0), (-1, 10, 1.0), (62, 40, 1.0), (5, 5, 1.0), (30, 30, 2.0)], raster="scene.tif")
    (tmp_path / "scene.tif").write_bytes((folder / "scene.tif").read_bytes())
    with open(table, "a") as handle:
        handle.write("abc,4000000,1,scene.tif\n")
    points = read_point_table(table, DataConfig(tile=TILE, skip_bad=True))
    reasons = [row.reason for row in points.bad]
    (x1, y1), (x2, y2), (x3, y3) = centre(-1, 10), centre(62, 40), centre(5, 5)
    assert reasons == [
        f"point ({x1:g}, {y1:g}) is outside scene.tif (x 500000 to 500640, y {TOP - 640:g} to 4e+06)",
        f"the 8x8 chip around point ({x2:g}, {y2:g}) crosses the edge of scene.tif",
        f"point ({x3:g}, {y3:g}) lies on nodata",
        "same raster pixel as row 2",
        "x 'abc' is not a number",
    ]
    chip = points.data.x[0]
    assert chip.shape == (TILE, TILE, 1) and chip.dtype == np.uint8
    np.testing.assert_array_equal(chip[..., 0], pixels[0, 26:34, 26:34])  # the point at (4, 4) of its chip
    assert points.data.paths == (f"scene.tif@{centre(30, 30)[0]!r},{centre(30, 30)[1]!r}",)
    with pytest.raises(Img2NumError, match="--tile N"):
        read_point_table(table, DataConfig(skip_bad=True))


def test_bands_of_a_13_band_scene_and_of_geotiff_chip_files(tmp_path):
    from img2num.data import read_image_table
    from img2num.data.rasters import read_point_table

    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 10000, (13, 32, 32), dtype=np.uint16)
    write_raster(tmp_path / "s2.tif", pixels)
    table = write_points(tmp_path / "points.csv", [(10, 10, 1.0), (20, 15, 2.0)], raster="s2.tif")
    every = read_point_table(table, DataConfig(tile=TILE))
    assert every.data.x.shape == (2, TILE, TILE, 13) and every.data.x.dtype == np.uint16
    chosen = read_point_table(table, DataConfig(tile=TILE, bands=(4, 3, 2)))
    np.testing.assert_array_equal(chosen.data.x[0], np.moveaxis(pixels[[3, 2, 1], 6:14, 6:14], 0, -1))
    assert chosen.data.spec.bands == (4, 3, 2) and chosen.data.spec.source_bands == 13
    with pytest.raises(Img2NumError, match="has 13 bands; --bands asks for band 14"):
        read_point_table(table, DataConfig(tile=TILE, bands=(14,)))
    # Chips given as GeoTIFF files keep every band, or the bands chosen.
    with open(tmp_path / "chips.csv", "w") as handle:
        handle.write("file,label\n")
        for index in range(3):
            write_raster(tmp_path / f"chip{index}.tif", pixels[:, index : index + TILE, :TILE].copy())
            handle.write(f"chip{index}.tif,{index}\n")
    files = read_image_table(tmp_path / "chips.csv", DataConfig()).data
    assert files.x.shape == (3, TILE, TILE, 13) and files.x.dtype == np.uint16
    files = read_image_table(tmp_path / "chips.csv", DataConfig(bands=(4, 3, 2))).data
    np.testing.assert_array_equal(files.x[1], np.moveaxis(pixels[[3, 2, 1], 1 : 1 + TILE, :TILE], 0, -1))


def _windows(pixels, tile, stride):
    return {
        (i, j): pixels[0, i * stride : i * stride + tile, j * stride : j * stride + tile, np.newaxis]
        for i in range(math.ceil(64 / stride)) for j in range(math.ceil(64 / stride))
        if i * stride + tile <= 64 and j * stride + tile <= 64
    }


def test_map_geotiff_holds_one_prediction_per_window(scene, raster_run, tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    folder, pixels = scene
    status, out, err = run_cli(capsys, "predict", raster_run.path, folder / "scene.tif", "--tile", TILE, "--output", tmp_path / "map.tif")
    assert status == 0, err
    assert "map [####################] 100%" in err and "60 windows predicted, 4 nodata, a 8x8 map" in out
    with rasterio.open(tmp_path / "map.tif") as result:
        assert result.crs.to_string() == CRS and result.shape == (8, 8) and result.dtypes == ("float32",)
        assert result.transform == from_origin(LEFT, TOP, PIXEL * TILE, PIXEL * TILE) and math.isnan(result.nodata)
        values = result.read(1)
    windows = _windows(pixels, TILE, TILE)
    expected = raster_run.predict(np.stack(list(windows.values())))
    got = np.array([values[key] for key in windows])
    nodata = [key for key in windows if key[0] < 2 and key[1] < 2]  # the 16x16 nodata corner
    assert np.isnan(values[0:2, 0:2]).all() and len(nodata) == 4
    keep = [index for index, key in enumerate(windows) if key not in nodata]
    np.testing.assert_allclose(got[keep], expected[keep], rtol=1e-5)
    assert (tmp_path / "map.png").stat().st_size > 1000
    status, _, err = run_cli(capsys, "predict", raster_run.path, folder / "scene.tif", "--tile", TILE, "--output", tmp_path / "map.tif")
    assert status != 0 and one_line_error(err).endswith("map.tif: already exists; pass --overwrite to replace it")


def test_map_with_stride_and_csv_of_window_centres(scene, raster_run, tmp_path):
    import rasterio

    from img2num.maps import predict_map

    folder, pixels = scene
    stride = 4
    result = predict_map(raster_run, folder / "scene.tif", tmp_path / "map.tif", stride=stride, quiet=True)
    with rasterio.open(result.output) as written:
        values = written.read(1)
        assert written.shape == (16, 16) and written.transform.a == PIXEL * stride
    windows = _windows(pixels, TILE, stride)
    assert np.isnan(values[15]).all() and np.isnan(values[:, 15]).all()  # windows past the edge
    assert np.isfinite(values[14, 14]) and np.isnan(values[0, 0])
    # Window (2, 2) lies inside the 16x16 nodata corner; (2, 3) has exactly half of it: kept.
    assert np.isnan(values[2, 2]) and np.isfinite(values[2, 3])
    np.testing.assert_allclose(values[14, 3], raster_run.predict(windows[(14, 3)][np.newaxis])[0], rtol=1e-5)
    assert result.predicted == int(np.isfinite(values).sum()) and result.nodata == 256 - result.predicted

    table = predict_map(raster_run, folder / "scene.tif", tmp_path / "centres.csv", stride=stride, interval=0.5, quiet=True)
    rows = list(csv.DictReader(open(table.output)))
    assert len(rows) == result.predicted and list(rows[0]) == ["x", "y", "prediction", "lower", "upper"]
    by_centre = {(float(row["x"]), float(row["y"])): row for row in rows}
    row = by_centre[(LEFT + (3 * stride + TILE / 2) * PIXEL, TOP - (14 * stride + TILE / 2) * PIXEL)]
    assert float(row["prediction"]) == pytest.approx(float(values[14, 3]), rel=1e-5)
    assert float(row["lower"]) < float(row["prediction"]) < float(row["upper"])
    assert (tmp_path / "centres.png").exists() and (tmp_path / "map.png").exists()


def test_rasters_that_do_not_fit_the_run_are_refused_in_one_line(raster_run, tmp_path, capsys):
    write_raster(tmp_path / "rgb.tif", np.ones((3, 32, 32), np.uint8))
    write_raster(tmp_path / "deep.tif", np.ones((1, 32, 32), np.uint16))
    cases = {
        "rgb.tif": "rgb.tif: has 3 bands; the run was trained on 1-band input",
        "deep.tif": "deep.tif: holds uint16 pixels; the run was trained on uint8 pixels",
    }
    for name, message in cases.items():
        status, _, err = run_cli(capsys, "predict", raster_run.path, tmp_path / name, "--tile", TILE, "--output", tmp_path / "m.tif")
        assert status != 0 and one_line_error(err).endswith(message)
    status, _, err = run_cli(capsys, "predict", raster_run.path, tmp_path / "deep.tif", "--tile", 16, "--output", tmp_path / "m.tif")
    assert one_line_error(err).endswith("--tile 16: the run takes 8x8 images and was trained without resizing; use --tile 8")
    assert not (tmp_path / "m.tif").exists()
