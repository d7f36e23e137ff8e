"""Georeferenced rasters (GeoTIFF, read with rasterio): the chips around labelled map points, the
strips of windows a prediction map reads, and whether a raster fits a run's input.

A raster's pixels keep their type where image files have one (uint8, uint16); every other type
(int16, int32, float64, ...) becomes float32 with its values unchanged.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.config import DataConfig
from img2num.data.arrays import Dataset
from img2num.data.conforming import ImageSpec
from img2num.data.table import LABEL_COLUMNS, PATH_COLUMNS, SPLIT_NAMES, BadRow, parse_label, read_csv_rows
from img2num.errors import Img2NumError
from img2num.extras import require_extra

# The columns of a label CSV of map points: coordinates in the raster's CRS.
POINT_COLUMNS = ("x", "y")


@dataclass(frozen=True)
class PointTable:
    """The chips of a label CSV of map points, and its bad rows.

    Attributes:
        data: The chips around the usable points, in memory, with their spec (tile size, bands,
            pixel type, the rasters' band count and pixel size).
        splits: Split name of each usable row from the CSV's split column, or None.
        bad: Rows that cannot be used, in file order.
        total: Data rows in the CSV.
    """

    data: Dataset
    splits: list[str] | None
    bad: list[BadRow]
    total: int


def is_point_table(path: str | Path, options: DataConfig) -> bool:
    """Whether a label CSV holds map points: `--raster` is given, or its header has x and y."""
    if options.raster is not None:
        return True
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None) or []
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # the label table reader names the problem
    return all(column in (cell.strip() for cell in header) for column in POINT_COLUMNS)


def pixel_kind(dtype: str) -> str:
    """The pixel type a raster band of numpy type `dtype` is read as: uint8, uint16 or float32."""
    return dtype if dtype in ("uint8", "uint16") else "float32"


def open_raster(path: str | Path):
    """Open a raster with rasterio for reading.

    Raises:
        Img2NumError: The file is missing, a folder, or not a raster rasterio reads.
    """
    rasterio = require_extra("rasterio")
    path = Path(path)
    if path.is_dir():
        raise Img2NumError(f"{path}: is a folder; expected a GeoTIFF file")
    if not path.exists():
        raise Img2NumError(f"{path}: no such file")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioError as error:
        raise Img2NumError(f"{path}: not a raster rasterio reads ({str(error).splitlines()[0]})") from None


def raster_problem(raster, spec: ImageSpec) -> str | None:
    """Why the open `raster` cannot feed a model of input `spec` (band count, pixel type), or None."""
    bands = spec.source_bands or spec.channels
    if raster.count != bands:
        chosen = "" if spec.bands is None else f" (bands {','.join(str(b) for b in spec.bands)} of them)"
        return f"has {raster.count} band{'s' if raster.count != 1 else ''}; the run was trained on {bands}-band input{chosen}"
    kinds = {pixel_kind(dtype) for dtype in raster.dtypes}
    if kinds != {spec.dtype}:
        return f"holds {'/'.join(sorted(set(raster.dtypes)))} pixels; the run was trained on {spec.dtype} pixels"
    return None


def band_indexes(spec: ImageSpec, count: int) -> list[int]:
    """The 1-based bands of a raster of `count` bands that make a model's input, in order."""
    return list(spec.bands) if spec.bands is not None else list(range(1, count + 1))


def read_pixels(raster, window, indexes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The pixels (H, W, C) of `window` (a rasterio `Window`) in the raster's pixel kind, and
    where they are nodata (H, W): masked or nodata in any of the bands, or not finite."""
    pixels = np.moveaxis(raster.read(indexes, window=window), 0, -1)
    invalid = (raster.read_masks(indexes, window=window) == 0).any(axis=0)
    if pixels.dtype.kind == "f":
        invalid |= ~np.isfinite(pixels).all(axis=-1)
    kind = pixel_kind(pixels.dtype.name)
    if pixels.dtype != kind:
        pixels = np.where(invalid[..., np.newaxis], 0, pixels).astype(kind)
    return pixels, invalid


def read_point_table(
    path: str | Path, options: DataConfig = DataConfig(), spec: ImageSpec | None = None, require_labels: bool = True
) -> PointTable:
    """Read a label CSV of map points (`x,y,label`) and cut the chip around each point.

    The raster of each row is the file its `file` (or `path`) column names, relative to the CSV,
    or `options.raster` when the CSV has no such column. The chip of a point is the tile x tile
    window whose pixel (tile // 2, tile // 2) holds the point: its centre for an odd tile, the
    pixel below and right of the centre for an even one.

    Args:
        path: The CSV file.
        options: Column names, `raster`, `tile` and `bands`, `skip_bad`.
        spec: A trained run's input (its tile size, bands and pixel type); None takes the tile
            from `options.tile` and the bands and pixel type from the first raster.
        require_labels: Fail when the CSV has no label column.

    Returns:
        The chips (every band of the raster, or `options.bands`) with their labels, splits and
        groups; bad rows: a cell that is no number, a point outside its raster, a chip that
        crosses the raster's edge, a point on nodata or a chip mostly nodata, a raster that is
        missing or does not fit the others (bands, pixel type), a second point on the same pixel.

    Raises:
        Img2NumError: The CSV is unusable, a row is bad (without `skip_bad`), no tile size is
            given, or no usable row is left.
    """
    path = Path(path)
    header, records = read_csv_rows(path, "the x, y and label columns")
    columns = _point_columns(path, header, options, require_labels)
    if spec is None and options.tile is None:
        raise Img2NumError(f"{path}: holds map points (x, y); give the size of the chip cut around each with --tile N")
    rows, bad = _parse_rows(path, header, records, columns, options)
    by_raster: dict[str, list[dict]] = {}
    for row in rows:
        by_raster.setdefault(row["raster"], []).append(row)
    chips, kept, seen = {}, [], {}
    for raster_path, raster_rows in by_raster.items():
        try:
            raster = open_raster(raster_path)
        except Img2NumError as error:
            reason = str(error).removeprefix(f"{raster_path}: ")
            bad.extend(BadRow(row["where"], row["name"], reason) for row in raster_rows)
            continue
        with raster:
            if spec is None:
                spec = _spec_of(raster, raster_path, options)
            problem = raster_problem(raster, spec)
            if problem:
                bad.extend(BadRow(row["where"], row["name"], problem) for row in raster_rows)
                continue
            indexes = band_indexes(spec, raster.count)
            for row in raster_rows:
                chip, problem = _chip(raster, row["x"], row["y"], spec.size, indexes)
                if problem is None:
                    key = (os.path.normcase(os.path.abspath(raster_path)), _pixel(raster, row["x"], row["y"]))
                    if key in seen:
                        problem = f"same raster pixel as row {seen[key]}"
                    else:
                        seen[key] = row["number"]
                if problem:
                    bad.append(BadRow(row["where"], row["name"], problem))
                else:
                    chips[row["number"]] = chip
                    kept.append(row)
    bad.sort(key=lambda row: int(row.where.rsplit(" row ", 1)[1]))
    if bad and not options.skip_bad:
        raise Img2NumError(bad[0].message)
    if not kept:
        raise Img2NumError(f"{path}: none of its {len(records)} rows is usable ({bad[0].message})")
    kept.sort(key=lambda row: row["number"])
    data = Dataset(
        np.stack([chips[row["number"]] for row in kept]),
        None if columns["label"] is None else np.asarray([row["label"] for row in kept], np.float32),
        str(path),
        tuple(f"{row['name']}@{row['x_text']},{row['y_text']}" for row in kept),
        spec,
        None if columns["group"] is None else tuple(row["group"] for row in kept),
    )
    splits = None if columns["split"] is None else [row["split"] for row in kept]
    return PointTable(data, splits, bad, len(records))


def _point_columns(path: Path, header: list[str], options: DataConfig, require_labels: bool) -> dict:
    def find(names, option, required):
        for name in names:
            if name in header:
                return header.index(name)
        if required:
            raise Img2NumError(f"{path}: has no column {' or '.join(repr(n) for n in names)} (found: {', '.join(header)}); choose one with {option}")
        return None

    columns = {axis: find((axis,), "x and y columns of map coordinates", True) for axis in POINT_COLUMNS}
    columns["label"] = find((options.label_column,) if options.label_column else LABEL_COLUMNS, "--label-column", require_labels)
    columns["file"] = find((options.path_column,) if options.path_column else PATH_COLUMNS, "--path-column", options.path_column is not None)
    columns["split"] = header.index(options.split_column) if options.split_column in header else None
    columns["group"] = None if options.group_column is None else find((options.group_column,), "--group-column", True)
    if options.time_column is not None:
        raise Img2NumError(f"{path}: --time-column is not read from tables of map points (yet); use --group-column or a split column")
    if columns["file"] is not None and options.raster is not None:
        raise Img2NumError(f"{path}: names a raster per row in column {header[columns['file']]!r} and --raster names one; use one of them")
    if columns["file"] is None and options.raster is None:
        raise Img2NumError(f"{path}: holds map points (x, y) but no file column naming their raster; name it with --raster scene.tif")
    return columns


def _parse_rows(path: Path, header, records, columns: dict, options: DataConfig) -> tuple[list[dict], list[BadRow]]:
    rows, bad = [], []
    for number, row in records:
        where = f"{path} row {number}"
        cells = row + [""] * (len(header) - len(row))
        name = cells[columns["file"]].strip() if columns["file"] is not None else str(options.raster)
        if not name:
            bad.append(BadRow(where, "", f"empty {header[columns['file']]!r} cell"))
            continue
        item = {"where": where, "number": number, "name": name}
        item["raster"] = str(path.parent / name) if columns["file"] is not None else name
        problem = None
        for axis in POINT_COLUMNS:
            text = cells[columns[axis]].strip()
            value, problem = parse_label(text, axis)
            if problem:
                break
            item[axis], item[f"{axis}_text"] = value, text
        if problem is None and columns["label"] is not None:
            item["label"], problem = parse_label(cells[columns["label"]].strip(), header[columns["label"]])
        if problem is None and columns["split"] is not None:
            item["split"] = SPLIT_NAMES.get(cells[columns["split"]].strip().lower())
            if item["split"] is None:
                problem = f"split {cells[columns['split']].strip()!r} is not train, val or test"
        if problem is None and columns["group"] is not None:
            item["group"] = cells[columns["group"]].strip()
            if not item["group"]:
                problem = f"empty {header[columns['group']]!r} cell"
        if problem:
            bad.append(BadRow(where, name, problem))
        else:
            rows.append(item)
    return rows, bad


def _spec_of(raster, raster_path: str, options: DataConfig) -> ImageSpec:
    """The input spec that the first raster of a training table gives."""
    if options.bands is not None and max(options.bands) > raster.count:
        raise Img2NumError(f"{raster_path}: has {raster.count} bands; --bands asks for band {max(options.bands)}")
    channels = len(options.bands) if options.bands is not None else raster.count
    x_size, y_size = (abs(float(v)) for v in raster.res)
    return ImageSpec(
        (options.tile, options.tile), channels, pixel_kind(raster.dtypes[0]), "none",
        options.bands, raster.count, (x_size, y_size),
    )


def _pixel(raster, x: float, y: float) -> tuple[int, int]:
    """(row, column) of the pixel holding map point (x, y)."""
    inverse = ~raster.transform
    column, row = inverse.a * x + inverse.b * y + inverse.c, inverse.d * x + inverse.e * y + inverse.f
    return math.floor(row), math.floor(column)


def _chip(raster, x: float, y: float, size: tuple[int, int], indexes: list[int]) -> tuple[np.ndarray | None, str | None]:
    from rasterio.windows import Window

    row, column = _pixel(raster, x, y)
    height, width = size
    name = Path(raster.name).name
    if not (0 <= row < raster.height and 0 <= column < raster.width):
        left, bottom, right, top = raster.bounds
        return None, f"point ({x:g}, {y:g}) is outside {name} (x {left:g} to {right:g}, y {bottom:g} to {top:g})"
    top_row, left_column = row - height // 2, column - width // 2
    if top_row < 0 or left_column < 0 or top_row + height > raster.height or left_column + width > raster.width:
        return None, f"the {height}x{width} chip around point ({x:g}, {y:g}) crosses the edge of {name}"
    pixels, invalid = read_pixels(raster, Window(left_column, top_row, width, height), indexes)
    if invalid[height // 2, width // 2]:
        return None, f"point ({x:g}, {y:g}) lies on nodata"
    if invalid.sum() * 2 > invalid.size:
        return None, f"the chip around point ({x:g}, {y:g}) is mostly nodata ({int(invalid.sum())} of {invalid.size} pixels)"
    return pixels, None
