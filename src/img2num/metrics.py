"""Regression metrics (MSE, RMSE, MAE, R^2), their printing, and the warnings for a model that
barely beats predicting the mean and for held-out images with near-copies in training."""

from __future__ import annotations

import math

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


# `train` and `compare` warn when at least this share of the validation or test images has a
# near-copy among the training images (`img2num.data.near_copies`).
NEAR_COPY_SHARE = 0.15
_SPLIT_WORDS = {"val": "validation", "test": "test"}


def near_copy_warning(shares: dict) -> str | None:
    """One line saying held-out images have near-copies in training, with the fix, or None.

    Args:
        shares: The share of validation (`val`) and test (`test`) images with a near-copy among
            the training images (`img2num.data.near_copies.measure_near_copies`).
    """
    flagged = [name for name in ("val", "test") if shares.get(name, 0.0) >= NEAR_COPY_SHARE]
    if not flagged:
        return None
    counts = " and ".join(f"{shares[name]:.0%} of {_SPLIT_WORDS[name]} images" for name in flagged)
    scores = " and ".join(_SPLIT_WORDS[name] for name in flagged)
    return (
        f"{counts} have a near-copy in training (crops or frames of the same scenes?): {scores} scores "
        "will flatter the model on new scenes; keep scenes apart with --group-column NAME or "
        "--time-column NAME (docs/groups.md)"
    )


# `train` warns when validation holds fewer whole groups than this: its scores then rest on one or
# two cameras or scenes. On the haze benchmark with --group-column scene, the default scored
# validation R^2 0.79 on the two photographs held out and 0.24 on three new ones (docs/groups.md).
FEW_GROUPS = 3


def few_groups_warning(validation: dict) -> str | None:
    """One line saying that validation holds too few groups to tell how the model does on new
    ones (`FEW_GROUPS`), with what shows the spread; None otherwise or without groups.

    Args:
        validation: How validation was drawn (`img2num.data.validation_record`).
    """
    counts, column = validation.get("groups") or {}, validation.get("group_column")
    held = counts.get("val")
    if column is None or held is None or held >= FEW_GROUPS:
        return None
    total = sum(counts.values())
    return (
        f"validation holds {held} of {total} {column!r} groups: its scores rest on {'it' if held == 1 else 'them'} "
        f"and may not carry to other groups; see the spread over groups with img2num compare DATA "
        f"--group-column {column} --cv groups, or hold out more (--val-fraction) (docs/groups.md)"
    )


def format_metrics(metrics: dict[str, float]) -> str:
    """Metrics as aligned `name value` lines for a terminal (`number_text`)."""
    names = [name for name in METRIC_NAMES + INTERVAL_NAMES if name in metrics]
    width = max([5] + [len(name) for name in names])
    lines = []
    for name in names:
        if name == "r2" and r2_text(metrics[name]) == "n/a":
            lines.append(f"{name:<{width}} undefined (every label is the same, so there is no spread to explain)")
        else:
            lines.append(f"{name:<{width}} {number_text(metrics[name])}")
    return "\n".join(lines)


# Beyond this size, `number_text` writes a number in exponent form.
LARGE = 1e6


def number_text(value: float) -> str:
    """A metric for people: four decimals, or four significant digits in exponent form from
    `LARGE` up (`1.235e+76`, not 77 digits)."""
    return f"{value:.4g}" if math.isfinite(value) and abs(value) >= LARGE else f"{value:.4f}"


def metrics_by_group(y_true, y_pred, groups) -> list[dict]:
    """`regression_metrics` of each group's rows (a camera, a site, a day), worst MSE first.

    Args:
        y_true: True values, shape (N,).
        y_pred: Predictions, shape (N,) or (N, 1).
        groups: Each row's group (text), length N.

    Returns:
        One dict per group: `group`, `samples`, `mse`, `rmse`, `mae` and `r2` (NaN where the
        group's labels are all the same), sorted by MSE, highest first (equal MSEs by name).

    Raises:
        ValueError: The arrays differ in length or are empty.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    groups = np.asarray([str(group) for group in groups], dtype=object)
    if not (len(y_true) == len(y_pred) == len(groups)) or len(groups) == 0:
        raise ValueError(f"need equal, non-empty lengths, got {len(y_true)}, {len(y_pred)} and {len(groups)} groups")
    rows = []
    for name in sorted(set(groups)):
        mine = groups == name
        rows.append({"group": name, "samples": int(mine.sum()), **regression_metrics(y_true[mine], y_pred[mine])})
    return sorted(rows, key=lambda row: -row["mse"])  # stable: equal MSEs keep the names' order


def format_group_metrics(rows: list[dict], column: str) -> str:
    """Per-group metrics (`metrics_by_group`) as an aligned table for a terminal, headed by the
    column's name; R^2 of constant labels reads "undefined"."""
    header = [column, "samples", *METRIC_NAMES]
    cells = [
        [row["group"], str(row["samples"]), *(f"{row[name]:.4f}" for name in METRIC_NAMES[:-1]),
         "undefined" if r2_text(row["r2"]) == "n/a" else f"{row['r2']:.4f}"]
        for row in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in [header, *cells]
    )
