"""Regression metrics: MSE, RMSE, MAE and R^2."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

METRIC_NAMES = ("mse", "rmse", "mae", "r2")
# Printed after the metrics when `evaluate` was given an interval level.
INTERVAL_NAMES = ("interval_level", "coverage", "mean_width")


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """Score predictions against true values.

    R^2 compares the error with the labels' own spread; when every label is the same there is
    no spread, and R^2 is undefined: NaN (null in JSON files), shown as "undefined". (scikit-learn
    gives 0.0 there, which reads as a useless model even when its error is tiny.)

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
    # Equal labels have no spread (the mean of equal numbers may still be off by a rounding).
    # R^2 does not change with the labels' scale: measured on the largest deviation, sums of
    # squares of tiny labels do not underflow to 0.
    deviation = y_true - y_true.mean()
    scale = float(np.abs(deviation).max())
    r2 = float("nan")
    if np.ptp(y_true) > 0 and scale > 0:
        with np.errstate(over="ignore"):
            r2 = 1.0 - float(np.sum((error / scale) ** 2)) / float(np.sum((deviation / scale) ** 2))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(error))), "r2": r2}


def r2_text(value: float | None) -> str:
    """R^2 for a table: four decimals, or "n/a" where it is undefined (constant labels)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


# `train` warns when the validation R^2 of its model is below this: it barely beats the mean.
WEAK_R2 = 0.1


def mean_baseline_mse(train_y, val_y) -> float:
    """Validation MSE of predicting the mean training label for every image."""
    train_y = np.asarray(train_y, dtype=np.float64).reshape(-1)
    val_y = np.asarray(val_y, dtype=np.float64).reshape(-1)
    return float(np.mean((val_y - train_y.mean()) ** 2))


def weak_fit_warning(val_metrics: dict[str, float], baseline_mse: float, model: str) -> str | None:
    """One line saying a model barely beats the training mean on validation data, or None.

    It applies when the validation R^2 is below `WEAK_R2` or the validation MSE is not below
    (1 - `WEAK_R2`) times the mean baseline's; not where R^2 is undefined (constant labels).

    Args:
        val_metrics: The model's validation metrics (`regression_metrics`).
        baseline_mse: Validation MSE of predicting the training mean (`mean_baseline_mse`).
        model: The model's name, for the message.
    """
    r2 = val_metrics.get("r2")
    if r2 is None or not math.isfinite(r2):  # constant labels: nothing to beat
        return None
    if r2 >= WEAK_R2 and val_metrics["mse"] < (1 - WEAK_R2) * baseline_mse:
        return None
    return (
        f"{model} barely beats predicting the mean (validation R^2 {val_metrics['r2']:.3f}, MSE "
        f"{val_metrics['mse']:.4g} against {baseline_mse:.4g} for the mean); likely causes: labels the "
        "images do not show (no signal), a model family that cannot see what matters (try --model "
        "cnn_gap or pixel_gap), or too little training (raise --time-limit or --epochs)"
    )


def format_metrics(metrics: dict[str, float]) -> str:
    """Metrics as aligned `name value` lines for a terminal."""
    names = [name for name in METRIC_NAMES + INTERVAL_NAMES if name in metrics]
    width = max([5] + [len(name) for name in names])
    lines = []
    for name in names:
        if name == "r2" and r2_text(metrics[name]) == "n/a":
            lines.append(f"{name:<{width}} undefined (every label is the same, so there is no spread to explain)")
        else:
            lines.append(f"{name:<{width}} {metrics[name]:.4f}")
    return "\n".join(lines)


def evaluation_record(run, data, options=None, interval: float | None = None) -> dict:
    """Score a trained run on labelled data: the record `evaluate` saves.

    Args:
        run: A `Run` or the path of a run folder.
        data: A labelled `Dataset` or `ImageFiles`, an `.npz` file, or a label CSV naming image
            files (or a folder holding one). Image files are decoded as the run's training
            images were.
        options: How a label CSV is read (`DataConfig`: column names, `skip_bad`).
        interval: A level in (0, 1) such as 0.9 to also score the run's prediction intervals.

    Returns:
        `data` (the source), `samples`, `mse`, `rmse`, `mae`, `r2`; with `interval` also
        `interval_level`, `coverage` (share of labels inside their interval) and `mean_width`;
        and, when rows were skipped, `skipped` (one message each).

    Raises:
        Img2NumError: The run or data cannot be read, the data has no labels, the images do
            not fit the model, or the level is bad or the run has no calibration.
    """
    from img2num.bundle import as_run
    from img2num.config import DataConfig
    from img2num.data import ImageFiles, as_dataset, label_csv, read_image_table

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
    predictions = run.predict_data(data)
    record = {"data": data.source, "samples": len(data), **regression_metrics(data.y, predictions)}
    if interval is not None:
        from img2num.intervals import interval_metrics

        record.update(interval_metrics(data.y, run.interval(predictions, interval), interval))
    if skipped:
        record["skipped"] = [row.message for row in skipped]
    return record


def evaluate(run, data, output=None, overwrite: bool = False, options=None, interval: float | None = None) -> dict[str, float]:
    """Score a trained run on labelled data, optionally saving the metrics as JSON.

    Args:
        run: A `Run` or the path of a run folder.
        data: Labelled data, as `evaluation_record` takes it.
        output: JSON file to write `evaluation_record` to, or None.
        overwrite: Replace an existing `output` file. Without it, an existing file is replaced
            only when it holds an earlier evaluation of the same data.
        options: How a label CSV is read (`DataConfig`: column names, `skip_bad`).
        interval: A level in (0, 1) such as 0.9 to also score the run's prediction intervals.

    Returns:
        `mse`, `rmse`, `mae` and `r2`; with `interval` also `interval_level`, `coverage` and
        `mean_width`.

    Raises:
        Img2NumError: As `evaluation_record`; or `output` holds something else and `overwrite`
            is false (checked once the metrics are known).
    """
    record = evaluation_record(run, data, options, interval)
    if output is not None:
        save_evaluation(output, record, overwrite)
    return {name: record[name] for name in METRIC_NAMES + INTERVAL_NAMES if name in record}


def save_evaluation(output, record: dict, overwrite: bool = False) -> Path:
    """Write an `evaluation_record` as JSON, replacing only an evaluation of the same data
    unless `overwrite`.

    Raises:
        Img2NumError: `output` holds something else and `overwrite` is false.
    """
    from img2num.io import check_replaceable_file, write_json

    check_replaceable_file(output, overwrite or _evaluation_of(output) == _same(record["data"]))
    return write_json(output, record)


def evaluation_file(run_folder, source) -> Path:
    """Where `img2num evaluate` saves by default: `RUN/evaluations/NAME.json` after the data
    file's name, or `NAME-2.json`, `NAME-3.json`, ... when that name holds an evaluation of
    other data (two `labels.csv` files in different folders)."""
    folder, stem = Path(run_folder) / "evaluations", Path(source).stem
    number = 1
    while True:
        path = folder / (f"{stem}.json" if number == 1 else f"{stem}-{number}.json")
        if not path.exists() or _evaluation_of(path) == _same(source):
            return path
        number += 1


def _same(source) -> str:
    return os.path.normcase(os.path.abspath(str(source)))


def _evaluation_of(path) -> str | None:
    """The data source recorded in an earlier evaluation file, if it is one (as an absolute path)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return None if data is None else _same(data)
