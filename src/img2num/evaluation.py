"""Regression metrics: MSE, RMSE, MAE and R^2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRIC_NAMES = ("mse", "rmse", "mae", "r2")


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
    (1 - `WEAK_R2`) times the mean baseline's.

    Args:
        val_metrics: The model's validation metrics (`regression_metrics`).
        baseline_mse: Validation MSE of predicting the training mean (`mean_baseline_mse`).
        model: The model's name, for the message.
    """
    if val_metrics["r2"] >= WEAK_R2 and val_metrics["mse"] < (1 - WEAK_R2) * baseline_mse:
        return None
    return (
        f"{model} barely beats predicting the mean (validation R^2 {val_metrics['r2']:.3f}, MSE "
        f"{val_metrics['mse']:.4g} against {baseline_mse:.4g} for the mean); likely causes: labels the "
        "images do not show (no signal), a model family that cannot see what matters (try --model "
        "cnn_gap or pixel_gap), or too little training (raise --time-limit or --epochs)"
    )


def format_metrics(metrics: dict[str, float]) -> str:
    """Metrics as aligned `name value` lines for a terminal."""
    return "\n".join(f"{name:<5} {metrics[name]:.4f}" for name in METRIC_NAMES if name in metrics)


def evaluate(run, data, output=None, overwrite: bool = False, options=None) -> dict[str, float]:
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

    Returns:
        `mse`, `rmse`, `mae` and `r2`.

    Raises:
        Img2NumError: The run or data cannot be read, the data has no labels, the images do
            not fit the model, or `output` holds something else and `overwrite` is false.
    """
    from img2num.bundle import as_run
    from img2num.config import DataConfig
    from img2num.data import ImageFiles, as_dataset, label_csv, read_image_table
    from img2num.io import check_replaceable_file, write_json

    run = as_run(run)
    skipped = []
    csv_path = label_csv(data)
    if csv_path is not None:
        table = read_image_table(csv_path, options or DataConfig(), run.preprocessing.image_spec())
        data, skipped = table.data, table.skipped
    elif not isinstance(data, ImageFiles):
        data = as_dataset(data, require_labels=True)
    if output is not None:
        check_replaceable_file(output, overwrite or _evaluation_of(output) == data.source)
    metrics = regression_metrics(data.y, run.predict_data(data))
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
