"""Prediction maps: a run applied to every tile x tile window of a GeoTIFF raster, written as a
GeoTIFF with one value per window (or a CSV of window centres), strip by strip in bounded memory,
with a PNG preview beside it."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from img2num.bundle import Run, as_run
from img2num.config import PREDICT_BATCH_SIZE
from img2num.data.conforming import BadImage, conform
from img2num.data.rasters import band_indexes, open_raster, raster_problem, read_pixels
from img2num.errors import Img2NumError
from img2num.extras import require_extra
from img2num.io import atomic_path, check_replaceable_file, progress_printer

MAP_SUFFIXES = (".tif", ".tiff", ".csv")
# GDAL's block cache while a map is made, in MB (its default is 5% of the machine's memory).
GDAL_CACHE_MB = 64
# The preview is drawn from at most this many windows a side (every k-th row and column).
PREVIEW_SIDE = 1000
# Progress lines: one per this share of the strips.
_PROGRESS_STEP = 0.1


@dataclass(frozen=True)
class MapResult:
    """What `predict_map` wrote.

    Attributes:
        output: The map (GeoTIFF) or the CSV of window centres.
        preview: The PNG preview beside it.
        shape: (rows, columns) of the window grid, the map's size in pixels.
        predicted: Windows predicted on.
        nodata: Windows left without a prediction (mostly nodata, or past the raster's edge).
        seconds: Time taken, from opening the raster to the written preview.
    """

    output: Path
    preview: Path
    shape: tuple[int, int]
    predicted: int
    nodata: int
    seconds: float


def predict_map(
    run: Run | str | Path,
    raster: str | Path,
    output: str | Path,
    tile: int | None = None,
    stride: int | None = None,
    interval: float | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> MapResult:
    """Predict every tile x tile window of a raster and write the map.

    Window (i, j) has its top-left pixel at raster row i * stride, column j * stride. The map
    has one pixel per window: the raster's CRS, its transform scaled by the stride, so map pixel
    (i, j) covers the window's top-left stride x stride cell, and the window's centre lies
    tile / (2 * stride) map pixels right of and below the map pixel's top-left corner (at its
    centre when stride equals tile). A window more than half of whose pixels are nodata (in any
    band, or masked), or that runs past the raster's edge, is nodata (NaN) on the map.

    A `.csv` output holds `x,y,prediction` rows instead, one per predicted window, with the
    window's centre in the raster's CRS. With `interval`, a GeoTIFF gains bands 2 and 3 (lower,
    upper) and a CSV the columns `lower,upper`. A PNG preview with a colour bar is written beside
    the output (map.png beside map.tif).

    The raster is read one strip of window rows at a time and the windows predicted in batches,
    so memory depends on the raster's width and the tile, not its height.

    Args:
        run: A `Run` or the path of a run folder.
        raster: A GeoTIFF (any raster rasterio reads) with the run's band count and pixel type.
        output: The map: `.tif`/`.tiff`, or `.csv`.
        tile: Window side in raster pixels; None takes the run's input size. Another size than
            the run's is brought to it by the run's resize rule, and refused by a run trained
            without resizing.
        stride: Step between windows in raster pixels; None takes `tile`.
        interval: A level in (0, 1) such as 0.9 to add prediction intervals.
        overwrite: Replace an existing output and preview.
        quiet: Print no progress.
        stream: Where progress goes (default: stderr).

    Returns:
        What was written, with counts and time.

    Raises:
        Img2NumError: A bad output name, an existing output without `overwrite`, an unreadable
            raster, one whose band count or pixel type does not fit the run, a tile the run
            cannot take, or a bad interval level or a run without calibration.
    """
    started = time.perf_counter()
    raster, output = Path(raster), Path(output)
    if output.suffix.lower() not in MAP_SUFFIXES:
        raise Img2NumError(f"{output}: a prediction map is written as .tif, .tiff or .csv")
    preview = output.with_suffix(".png")
    for path in (output, preview):
        check_replaceable_file(path, overwrite, [raster])
    run = as_run(run)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails first
    spec = run.preprocessing.image_spec()
    tile = tile or _square_size(spec.size)
    stride = stride or tile
    if (tile, tile) != tuple(spec.size) and spec.resize == "none":
        hint = f"; use --tile {spec.size[0]}" if spec.size[0] == spec.size[1] else ""
        raise Img2NumError(
            f"--tile {tile}: the run takes {spec.size[0]}x{spec.size[1]} images and was trained without resizing{hint}"
        )
    say = progress_printer(stream, quiet)
    rasterio = require_extra("rasterio")
    # GDAL keeps read and written blocks up to 5% of the machine's memory: bounded here, so the
    # memory is a few strips of windows whatever the raster's size.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(raster) as source:
        problem = raster_problem(source, spec)
        if problem:
            raise Img2NumError(f"{raster}: {problem}")
        grid = _Grid(source.height, source.width, tile, stride)
        if 0 in grid.inside:
            raise Img2NumError(f"{raster}: is {source.height}x{source.width} pixels; no {tile}x{tile} window fits in it")
        writer = _writer(output, source, grid, interval is not None)
        step = max(1, math.ceil(grid.shape[0] / PREVIEW_SIDE), math.ceil(grid.shape[1] / PREVIEW_SIDE))
        kept, predicted = [], 0
        with atomic_path(output) as tmp, writer(tmp) as write:
            for row in range(grid.shape[0]):
                values = _strip(run, source, grid, row, spec, interval)
                write(row, values)
                predicted += int(np.isfinite(values[0]).sum())
                if row % step == 0:
                    kept.append(values[0, ::step])
                _progress(say, row + 1, grid.shape[0], predicted, started)
        from img2num.plots import prediction_map

        left, top = source.bounds.left, source.bounds.top
        extent = (left, left + grid.shape[1] * stride * source.res[0], top - grid.shape[0] * stride * source.res[1], top)
        crs = source.crs.to_string() if source.crs else ""
        prediction_map(np.stack(kept), preview, title=f"{raster.name}: {tile}x{tile} windows, stride {stride}", extent=extent, units=crs)
    total = grid.shape[0] * grid.shape[1]
    return MapResult(output, preview, grid.shape, predicted, total - predicted, time.perf_counter() - started)


def _square_size(size) -> int:
    if size[0] != size[1]:
        raise Img2NumError(f"the run takes {size[0]}x{size[1]} images; give a square window with --tile N")
    return int(size[0])


@dataclass(frozen=True)
class _Grid:
    """The windows of a raster: the map's shape and how many rows and columns of windows fit."""

    height: int
    width: int
    tile: int
    stride: int

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.height / self.stride), math.ceil(self.width / self.stride)

    @property
    def inside(self) -> tuple[int, int]:
        fits = [max(0, (side - self.tile) // self.stride + 1) for side in (self.height, self.width)]
        return fits[0], fits[1]


def _strip(run: Run, source, grid: _Grid, row: int, spec, interval: float | None) -> np.ndarray:
    """The map's row `row`: (bands, columns) float32, NaN where a window has no prediction."""
    from rasterio.windows import Window

    bands = 1 if interval is None else 3
    values = np.full((bands, grid.shape[1]), np.nan, np.float32)
    if row >= grid.inside[0]:
        return values
    top, tile = row * grid.stride, grid.tile
    pixels, invalid = read_pixels(source, Window(0, top, grid.width, tile), band_indexes(spec, source.count))
    starts = np.arange(grid.inside[1]) * grid.stride
    # Nodata pixels per window, from running sums over the strip's columns.
    sums = np.concatenate([[0], np.cumsum(invalid.sum(axis=0))])
    usable = np.flatnonzero((sums[starts + tile] - sums[starts]) * 2 <= tile * tile)
    for begin in range(0, len(usable), PREDICT_BATCH_SIZE):
        columns = usable[begin : begin + PREDICT_BATCH_SIZE]
        x = np.stack([pixels[:, starts[j] : starts[j] + tile] for j in columns])
        if (tile, tile) != tuple(spec.size):
            try:
                x = np.stack([conform(window, spec) for window in x])
            except BadImage as error:
                raise Img2NumError(f"{source.name}: window at row {top}: {error}") from None
        predictions = run.predict(x, source.name)
        values[0, columns] = predictions
        if interval is not None:
            _, lower, upper = run.interval(predictions, interval)
            values[1, columns], values[2, columns] = lower, upper
    return values


def _writer(output: Path, source, grid: _Grid, bounds: bool):
    """A function that opens the output at a temporary path and yields `write(row, values)`."""
    import contextlib

    from rasterio.transform import Affine

    transform = source.transform * Affine.scale(grid.stride)
    centre = grid.tile / 2
    names = ["prediction"] + (["lower", "upper"] if bounds else [])

    @contextlib.contextmanager
    def geotiff(tmp: Path):
        import rasterio
        from rasterio.windows import Window

        profile = {
            "driver": "GTiff", "height": grid.shape[0], "width": grid.shape[1], "count": len(names), "dtype": "float32",
            "crs": source.crs, "transform": transform, "nodata": float("nan"), "compress": "deflate",
        }
        with rasterio.open(tmp, "w", **profile) as target:
            target.descriptions = tuple(names)

            def write(row: int, values: np.ndarray) -> None:
                target.write(values[:, np.newaxis, :], window=Window(0, row, grid.shape[1], 1))

            yield write

    @contextlib.contextmanager
    def table(tmp: Path):
        a, b, c, d, e, f = source.transform[:6]
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            rows = csv.writer(handle, lineterminator="\n")
            rows.writerow(["x", "y", *names])

            def write(row: int, values: np.ndarray) -> None:
                line = row * grid.stride + centre
                for column in np.flatnonzero(np.isfinite(values[0])):
                    pixel = column * grid.stride + centre
                    x, y = a * pixel + b * line + c, d * pixel + e * line + f
                    rows.writerow([repr(float(x)), repr(float(y)), *(repr(float(v)) for v in values[:, column])])

            yield write

    return table if output.suffix.lower() == ".csv" else geotiff


def _progress(say, done: int, total: int, predicted: int, started: float) -> None:
    """A progress bar line at each tenth of the strips (and the last)."""
    tenth = max(1, math.ceil(total * _PROGRESS_STEP))
    if done % tenth and done != total:
        return
    share = done / total
    seconds = time.perf_counter() - started
    bar = "#" * round(share * 20)
    say(f"map [{bar:<20}] {share:4.0%} {done}/{total} rows of windows, {predicted} predicted, {predicted / max(seconds, 1e-9):.0f} windows/s")
