"""Prediction with a trained run: on arrays, data sets, label CSVs, image files and folders,
PIL images; and the predictions CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from img2num.bundle import Run
from img2num.config import DataConfig
from img2num.data import (
    BadRow,
    Dataset,
    ImageFiles,
    as_dataset,
    list_image_files,
    load_dataset,
    read_image_paths,
    read_image_table,
)
from img2num.data.files import find_image_files
from img2num.engines import engine_run
from img2num.errors import Img2NumError
from img2num.io import check_replaceable_file, write_text

# Files decoded per step of `predict_files`, which bounds its memory.
_FILES_PER_STEP = 2048


def predict(
    run: Run | str | Path, data, options: DataConfig | None = None, interval: float | None = None, engine: str = "keras"
):
    """Predict one number per image with a trained run.

    Args:
        run: A `Run` or the path of a run folder.
        data: Images (N, H, W, C) or (N, H, W) as an array of the model's input size; a
            `Dataset` or `ImageFiles`; an `.npz` file; a label CSV (its labels are not needed);
            an image file or a folder of them (searched recursively, sorted by path); a PIL
            image; or a list of image files, PIL images and single-image arrays (H, W[, C]).
            Image files, PIL images and single images are brought to the model's input as its
            training images were (orientation, channels, size, pixel type).
        options: Column names of a label CSV.
        interval: A level in (0, 1) such as 0.9 to get prediction intervals too.
        engine: What runs the model: "keras", or "onnx" for ONNX Runtime on the run's exported
            graph (`img2num.engines.engine_run`).

    Returns:
        float32 predictions, shape (N,), in the order of the images (sorted paths for a folder);
        with `interval`, an `Interval` (prediction, lower, upper) instead.

    Raises:
        Img2NumError: The run or data cannot be read, an image does not fit the model, or the
            level is bad or the run has no calibration, or the engine is unknown or cannot run it.
    """
    run = engine_run(run, engine)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails first
        return run.interval(predict(run, data, options), interval)
    if isinstance(data, np.ndarray):
        return run.predict(data)
    if isinstance(data, (Dataset, ImageFiles)):
        return run.predict_data(data)
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.suffix.lower() == ".csv":
            table = read_image_table(path, options or DataConfig(), run.preprocessing.image_spec(), require_labels=False)
            return run.predict_data(table.data)
        if path.suffix.lower() != ".npz" and (path.is_dir() or path.exists()):
            data = list_image_files([path])
        else:
            return run.predict_data(as_dataset(path))
    items = data if isinstance(data, (list, tuple)) else [data]
    if items and all(isinstance(item, (str, Path)) for item in items):
        # Files decode on every core; the first bad one stops prediction, as any bad input does.
        _, x, bad = read_image_paths(items, run.preprocessing.image_spec())
        if bad:
            raise Img2NumError(bad[0].message)
        return run.predict(x, "images")
    return run.predict(_images(items, run), "images")


def predict_files(
    run: Run | str | Path, inputs: list[str | Path], workers: int | None = None, engine: str = "keras"
) -> tuple[list[str], np.ndarray, list[BadRow]]:
    """Predict on image files and folders, reporting bad files instead of stopping at them.

    Args:
        run: A `Run` or the path of a run folder.
        inputs: Image files and folders (searched recursively for image files, sorted).
        workers: Decoding processes; None uses every CPU core.
        engine: What runs the model: "keras" or "onnx" (as in `predict`).

    Returns:
        The files predicted on, their float32 predictions, and the files that could not be
        used with the reason.

    Raises:
        Img2NumError: The run cannot be read. (A named path that does not exist, or a folder
            without image files, is reported among the bad files.)
    """
    run = engine_run(run, engine)
    files, bad = find_image_files(inputs)
    spec = run.preprocessing.image_spec()
    done, parts = [], []
    for start in range(0, len(files), _FILES_PER_STEP):
        good, x, problems = read_image_paths(files[start : start + _FILES_PER_STEP], spec, workers)
        bad.extend(problems)
        if good:
            done.extend(good)
            parts.append(run.predict(x, "images"))
    predictions = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return done, predictions, bad


@dataclass(frozen=True)
class PathPredictions:
    """What `predict_paths` found: one row per prediction, and the inputs that could not be used.

    Attributes:
        predictions: float32 predictions, shape (N,).
        paths: The image file of each prediction; None for an .npz file, whose rows are its indexes.
        labels: The labels of an .npz file or label CSV that has them, else None.
        bounds: With an interval level, the (lower, upper) arrays of each prediction, else None.
        bad: The files or CSV rows that could not be used, each with its reason.
    """

    predictions: np.ndarray
    paths: list[str] | None
    labels: np.ndarray | None
    bounds: tuple[np.ndarray, np.ndarray] | None
    bad: list[BadRow]


def predict_paths(
    run: Run | str | Path,
    paths: str | Path | Sequence[str | Path],
    options: DataConfig | None = None,
    interval: float | None = None,
    engine: str = "keras",
) -> PathPredictions:
    """Predict on named inputs as `img2num predict` does, reporting bad files and rows, not stopping.

    The inputs are one .npz file (images in x, labels in y optional), one label CSV (its labels
    are not needed), or image files and folders (searched recursively for image files, sorted).

    Args:
        run: A `Run` or the path of a run folder.
        paths: The input paths, or one path.
        options: Column names of a label CSV and decoding processes (`workers`); its `skip_bad`
            is ignored, as bad rows and files are always reported and skipped.
        interval: A level in (0, 1) such as 0.9 to get prediction intervals too.
        engine: What runs the model: "keras" or "onnx" (as in `predict`).

    Returns:
        The predictions with their paths, labels and bounds, and the bad rows or files. (A named
        path that does not exist, or a folder without image files, is among the bad files.)

    Raises:
        Img2NumError: An .npz or CSV file is given with other inputs, the run or an .npz file
            cannot be read, or the level is bad or the run has no calibration.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(path) for path in paths]
    options = options or DataConfig()
    kinds = {path.suffix.lower() for path in paths}
    if ".npz" in kinds or ".csv" in kinds:
        if len(paths) > 1:
            raise Img2NumError(f"{paths[0]}: an .npz or CSV file is predicted on alone, not with other inputs")
    run = engine_run(run, engine)
    if interval is not None:
        run.interval([], interval)  # a run without calibration fails before any image is read
    names, labels, bad = None, None, []
    if ".npz" in kinds:
        data = load_dataset(paths[0])
        predictions, labels = run.predict(data.x, data.source), data.y
    elif ".csv" in kinds:
        table = read_image_table(paths[0], replace(options, skip_bad=True), run.preprocessing.image_spec(), require_labels=False)
        predictions, labels, names, bad = run.predict_data(table.data), table.data.y, list(table.data.paths), table.skipped
    else:
        names, predictions, bad = predict_files(run, paths, workers=options.workers, engine=engine)
    bounds = None if interval is None else tuple(run.interval(predictions, interval)[1:])
    return PathPredictions(predictions, names, labels, bounds, bad)


def _images(items, run: Run) -> np.ndarray:
    from PIL import Image, ImageOps

    from img2num.data.conforming import BadImage, conform

    from img2num.data.images import pil_to_array, read_image

    spec = run.preprocessing.image_spec()
    out = []
    for index, item in enumerate(items):
        name = str(item) if isinstance(item, (str, Path)) else f"image {index}"
        try:
            if isinstance(item, (str, Path)):
                array = read_image(item, spec=spec)
            elif isinstance(item, Image.Image):
                array = pil_to_array(ImageOps.exif_transpose(item))
            else:
                array = np.asarray(item)
                array = array[..., np.newaxis] if array.ndim == 2 else array
                if array.ndim != 3:
                    raise BadImage(f"expected one image (H, W) or (H, W, C), got shape {array.shape}")
            out.append(conform(array, spec))
        except BadImage as error:
            raise Img2NumError(f"{name}: {error}") from None
    if not out:
        raise Img2NumError("no images to predict on")
    return np.stack(out)


def predictions_csv(
    predictions: np.ndarray, labels: np.ndarray | None = None, paths: list[str] | None = None, bounds=None
) -> str:
    """Predictions as CSV text: `index,prediction` (or `path,prediction` when paths are
    given), plus `lower,upper` when `bounds` (two arrays) are given and `label` when labels are
    known."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [] if bounds is None else ["lower", "upper"]
    writer.writerow(["index" if paths is None else "path", "prediction"] + extra + ([] if labels is None else ["label"]))
    for index, value in enumerate(predictions):
        row = [index if paths is None else paths[index], repr(float(value))]
        if bounds is not None:
            row += [repr(float(bounds[0][index])), repr(float(bounds[1][index]))]
        if labels is not None:
            row.append(repr(float(labels[index])))
        writer.writerow(row)
    return buffer.getvalue()


def write_predictions(
    path: str | Path,
    predictions: np.ndarray,
    labels: np.ndarray | None = None,
    overwrite: bool = False,
    paths: list[str] | None = None,
    bounds=None,
    reads=(),
) -> Path:
    """Write `predictions_csv` to a file, atomically.

    `reads` names the files the predictions came from (the label CSV, image files), which the
    output never replaces, `overwrite` or not; the `paths` are among them.

    Raises:
        Img2NumError: The file exists and `overwrite` is false, or it is one of the inputs.
    """
    check_replaceable_file(path, overwrite, [*reads, *(paths or ())])
    return write_text(path, predictions_csv(predictions, labels, paths, bounds))
