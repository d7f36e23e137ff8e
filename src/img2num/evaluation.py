"""Regression metrics: MSE, RMSE, MAE and R^2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRIC_NAMES = ("mse", "rmse", "mae", "r2")
# Printed after the metrics when `evaluate` was given an interval level.
INTERVAL_NAMES = ("interval_level", "coverage", "mean_width")


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """Score predictions against true values.

    R^2 of a constant target follows scikit-learn: 1.0 for perfect predictions, else 0.0.

    Args:
        y_true: True values, shape (N,).
        y_pred: Predictions, shape (N,) or (N, 1).

    Returns:
        `mse`, `rmse`, `mae` and `r2` as floats.

    Raises:
        ValueError: The two arrays differ in length or are empty.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need equal, non-empty lengths, got {y_true.size} and {y_pred.size}")
    error = y_pred - y_true
    mse = float(np.mean(error**2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum(error**2))
    if total > 0:
        r2 = 1.0 - residual / total
    else:
        r2 = 1.0 if residual == 0 else 0.0
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(error))), "r2": r2}


def format_metrics(metrics: dict[str, float]) -> str:
    """Metrics as aligned `name value` lines for a terminal."""
    names = [name for name in METRIC_NAMES + INTERVAL_NAMES if name in metrics]
    width = max([5] + [len(name) for name in names])
    return "\n".join(f"{name:<{width}} {metrics[name]:.4f}" for name in names)


def evaluate(run, data, output=None, overwrite: bool = False, options=None, interval: float | None = None) -> dict[str, float]:
    """Score a trained run on labelled data, optionally saving the metrics as JSON.

    Args:
        run: A `Run` or the path of a run folder.
        data: A labelled `Dataset` or `ImageFiles`, an `.npz` file, or a label CSV naming image
            files (or a folder holding one). Image files are decoded as the run's training
            images were.
        output: JSON file to write the metrics to (with the data source, sample count and any
            skipped rows), or None.
        overwrite: Replace an existing `output` file. Without it, an existing file is replaced
            only when it holds an earlier evaluation of the same data file.
        options: How a label CSV is read (`DataConfig`: column names, `skip_bad`).
        interval: A level in (0, 1) such as 0.9 to also score the run's prediction intervals.

    Returns:
        `mse`, `rmse`, `mae` and `r2`; with `interval` also `interval_level`, `coverage` (share
        of labels inside their interval) and `mean_width`.

    Raises:
        Img2NumError: The run or data cannot be read, the data has no labels, the images do
            not fit the model, `output` holds something else and `overwrite` is false, or the
            level is bad or the run has no calibration.
    """
    from img2num.bundle import as_run
    from img2num.config import DataConfig
    from img2num.data import ImageFiles, as_dataset, label_csv, read_image_table
    from img2num.io import check_replaceable_file, write_json

    run = as_run(run)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails first
    skipped = []
    csv_path = label_csv(data)
    if csv_path is not None:
        table = read_image_table(csv_path, options or DataConfig(), run.preprocessing.image_spec())
        data, skipped = table.data, table.skipped
    elif not isinstance(data, ImageFiles):
        data = as_dataset(data, require_labels=True)
    if output is not None:
        check_replaceable_file(output, overwrite or _evaluation_of(output) == data.source)
    predictions = run.predict_data(data)
    metrics = regression_metrics(data.y, predictions)
    if interval is not None:
        from img2num.intervals import interval_metrics

        metrics.update(interval_metrics(data.y, run.interval(predictions, interval), interval))
    if output is not None:
        record = {"data": data.source, "samples": len(data), **metrics}
        if skipped:
            record["skipped"] = [row.message for row in skipped]
        write_json(output, record)
    return metrics


def _evaluation_of(path) -> str | None:
    """The data source recorded in an earlier evaluation file, if it is one."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return None
