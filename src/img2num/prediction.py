"""Prediction with a trained run, and the predictions CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from img2num.bundle import Run, as_run
from img2num.data import Dataset, as_dataset
from img2num.io import check_replaceable_file, write_text


def predict(run: Run | str | Path, data: Dataset | np.ndarray | str | Path) -> np.ndarray:
    """Predict one number per image with a trained run.

    Args:
        run: A `Run` or the path of a run folder.
        data: Images (N, H, W, C) or (N, H, W) as an array, a `Dataset`, or an `.npz` file.

    Returns:
        float32 predictions, shape (N,).

    Raises:
        Img2NumError: The run or data cannot be read, or the images do not fit the model.
    """
    run = as_run(run)
    if isinstance(data, np.ndarray):
        return run.predict(data)
    data = as_dataset(data)
    return run.predict(data.x, data.source)


def predictions_csv(predictions: np.ndarray, labels: np.ndarray | None = None) -> str:
    """Predictions as CSV text: `index,prediction`, plus `label` when labels are known."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "prediction"] + ([] if labels is None else ["label"]))
    for index, value in enumerate(predictions):
        row = [index, repr(float(value))]
        if labels is not None:
            row.append(repr(float(labels[index])))
        writer.writerow(row)
    return buffer.getvalue()


def write_predictions(
    path: str | Path, predictions: np.ndarray, labels: np.ndarray | None = None, overwrite: bool = False
) -> Path:
    """Write `predictions_csv` to a file, atomically.

    Raises:
        Img2NumError: The file exists and `overwrite` is false.
    """
    check_replaceable_file(path, overwrite)
    return write_text(path, predictions_csv(predictions, labels))
