"""Prediction intervals: split conformal calibration, normalized by how hard each image is, saved
with the run as `calibration.json` and applied at any level in (0, 1).

The difficulty is the mean absolute residual as a function of the prediction (binned, linearly
interpolated), fitted on the training split's residuals, so that every validation image gives a
conformal score |y - prediction| / difficulty(prediction); where the model fits its training
images much closer than the validation images (an overfit model, whose training residuals say
little of the shape), the validation split is cut in two seeded halves instead: the first fits
the difficulty, the second gives the scores. An interval at level q is prediction +- s *
difficulty(prediction), where s is the ceil((n + 1) q)-th smallest of the n scores; for images
exchangeable with the scored ones it covers the true value with probability at least q. The
validation split also chose the epoch (early stopping); see docs/intervals.md for what that
reuse costs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from img2num.errors import Img2NumError

CALIBRATION_FILE = "calibration.json"
METHODS = ("normalized", "plain")
# Calibration images per bin of the difficulty fit, and the most bins.
_PER_BIN = 40
_MAX_BINS = 20
# Difficulty never falls below this share of the mean absolute residual, so no score divides by ~0.
_FLOOR_SHARE = 1e-3
# The training residuals fit the difficulty when their mean is at least this share of the
# validation residuals' (below it the model fits its training images too closely for their
# residuals to show where it errs). On the points task (300 validation images, six seeds) scoring
# every validation image this way gave 90% intervals a coverage spread of 0.019 over seeds against
# 0.025 with halves, and 0.90 and 0.89 on the lowest and highest third of labels against 0.95 and
# 0.85 (docs/intervals.md).
TRAIN_FIT_MIN_SHARE = 0.5


class Interval(NamedTuple):
    """Predictions with their interval bounds, each float32 of shape (N,)."""

    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """What a run needs to turn predictions into intervals at any level.

    Attributes:
        scores: Sorted conformal scores of the calibration half.
        knots: Predictions (ascending) at which the difficulty is known.
        difficulty: Mean absolute residual at each knot (interpolated between, flat beyond).
        label_range: Smallest and largest label the run saw; bounds are clipped to it.
        method: "normalized" (difficulty fitted) or "plain" (difficulty 1: plain split conformal).
        fit_samples: Images that fitted the difficulty.
        fit_on: Which images fitted it: "validation half", "training" (or "other" when
            `calibrate` was given other labels and predictions), "" for "plain".
    """

    scores: tuple[float, ...]
    knots: tuple[float, ...]
    difficulty: tuple[float, ...]
    label_range: tuple[float, float]
    method: str = "normalized"
    fit_samples: int = 0
    fit_on: str = "validation half"

    def difficulty_of(self, predictions: np.ndarray) -> np.ndarray:
        """The difficulty estimate (an expected absolute error) for each prediction."""
        return np.interp(np.asarray(predictions, np.float64), self.knots, self.difficulty)

    def score_quantile(self, level: float) -> float:
        """The conformal quantile of the scores at `level`.

        Raises:
            Img2NumError: The level is not in (0, 1), or too close to 1 for the calibration size.
        """
        check_level(level)
        n = len(self.scores)
        rank = math.ceil((n + 1) * level)
        if rank > n:
            need = math.ceil(level / (1 - level))
            raise Img2NumError(
                f"interval level {level:g} needs at least {need} calibration images; this run has {n} "
                f"(use a lower level or a larger validation split)"
            )
        return self.scores[rank - 1]

    def interval(self, predictions: np.ndarray, level: float) -> Interval:
        """Intervals around `predictions` that cover the true value with probability >= `level`.

        Raises:
            Img2NumError: The level is not in (0, 1), or too close to 1 for the calibration size.
        """
        predictions = np.asarray(predictions, np.float64).reshape(-1)
        half = self.score_quantile(level) * self.difficulty_of(predictions)
        low, high = self.label_range
        # Clipped to the labels seen, but never past the prediction itself (one outside them).
        lower = np.minimum(np.clip(predictions - half, low, high), predictions)
        upper = np.maximum(np.clip(predictions + half, low, high), predictions)
        return Interval(predictions.astype(np.float32), lower.astype(np.float32), upper.astype(np.float32))

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "label_range": list(self.label_range),
            "fit_samples": self.fit_samples,
            "fit_on": self.fit_on,
            "knots": list(self.knots),
            "difficulty": list(self.difficulty),
            "scores": list(self.scores),
        }

    @classmethod
    def from_dict(cls, value: dict) -> Calibration:
        """Read `to_dict`'s output.

        Raises:
            ValueError: A field is missing or out of range.
        """
        calibration = cls(
            tuple(float(v) for v in value["scores"]),
            tuple(float(v) for v in value["knots"]),
            tuple(float(v) for v in value["difficulty"]),
            tuple(float(v) for v in value["label_range"]),
            str(value.get("method", "normalized")),
            int(value.get("fit_samples", 0)),
            str(value.get("fit_on", "validation half")),
        )
        arrays = [np.asarray(a) for a in (calibration.scores, calibration.knots, calibration.difficulty)]
        if (
            not calibration.scores
            or not calibration.knots
            or len(calibration.knots) != len(calibration.difficulty)
            or len(calibration.label_range) != 2
            or not all(np.isfinite(a).all() for a in arrays)
            or np.any(np.diff(arrays[0]) < 0)
            or np.any(np.diff(arrays[1]) < 0)
            or np.any(arrays[2] <= 0)
        ):
            raise ValueError("scores, knots and difficulty must be finite, sorted, non-empty and positive")
        return calibration


def check_level(level: float) -> float:
    """Return `level` if it is a number strictly between 0 and 1.

    Raises:
        Img2NumError: It is not.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise Img2NumError(f"interval level must be a number between 0 and 1 (such as 0.9), got {level!r}")
    return float(level)


def calibrate(
    labels: np.ndarray,
    predictions: np.ndarray,
    rng: np.random.Generator,
    method: str = "normalized",
    label_range: tuple[float, float] | None = None,
    difficulty_data: tuple[np.ndarray, np.ndarray] | None = None,
    fit_on: str = "other",
) -> Calibration:
    """Calibrate intervals on held-out labels and the run's predictions of them.

    Args:
        labels: True values of the calibration images, shape (N,), N >= 2.
        predictions: The run's predictions of them, shape (N,).
        rng: Draws which half fits the difficulty and which half gives the scores.
        method: "normalized" (intervals widen where the residuals are larger) or "plain"
            (one width for every image; all N images give scores).
        label_range: Bounds to clip intervals to; default the range of `labels`.
        difficulty_data: Other labels and predictions (say, of the training split) to fit the
            difficulty on, so that all N images give scores; default the first half of the N.
        fit_on: What `difficulty_data` are, for the record ("training").

    Returns:
        The calibration.

    Raises:
        Img2NumError: Fewer than 2 images (4 for "normalized"), lengths differ, values are not
            finite, or the method is unknown.
    """
    labels = np.asarray(labels, np.float64).reshape(-1)
    predictions = np.asarray(predictions, np.float64).reshape(-1)
    if method not in METHODS:
        raise Img2NumError(f"interval method must be one of {', '.join(METHODS)}, got {method!r}")
    if labels.shape != predictions.shape:
        raise Img2NumError(f"calibration needs one prediction per label, got {len(labels)} labels and {len(predictions)} predictions")
    least = 4 if method == "normalized" else 2
    if len(labels) < least or not (np.isfinite(labels).all() and np.isfinite(predictions).all()):
        raise Img2NumError(f"calibration needs at least {least} finite labels and predictions, got {len(labels)}")
    residuals = np.abs(labels - predictions)
    if label_range is None:
        label_range = (float(labels.min()), float(labels.max()))
    if method == "plain":
        return Calibration(tuple(np.sort(residuals).tolist()), (0.0,), (1.0,), tuple(label_range), "plain", 0, "")
    if difficulty_data is None:
        order = rng.permutation(len(labels))
        fit, score = order[: len(order) // 2], order[len(order) // 2 :]
        knots, difficulty = fit_difficulty(predictions[fit], residuals[fit])
        fitted, fit_on = len(fit), "validation half"
    else:
        other_labels, other_predictions = (np.asarray(a, np.float64).reshape(-1) for a in difficulty_data)
        knots, difficulty = fit_difficulty(other_predictions, np.abs(other_labels - other_predictions))
        score, fitted = np.arange(len(labels)), len(other_labels)
    scores = residuals[score] / np.interp(predictions[score], knots, difficulty)
    return Calibration(
        tuple(np.sort(scores).tolist()),
        tuple(knots.tolist()),
        tuple(difficulty.tolist()),
        tuple(float(v) for v in label_range),
        "normalized",
        fitted,
        fit_on,
    )


def fit_difficulty(predictions: np.ndarray, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean absolute residual in bins of equal count along the prediction.

    Args:
        predictions: Predictions, shape (N,).
        residuals: Absolute residuals, shape (N,).

    Returns:
        Knots (the median prediction of each bin, ascending) and the mean absolute residual at
        each, floored at a small share of the overall mean.
    """
    bins = int(np.clip(len(predictions) // _PER_BIN, 1, _MAX_BINS))
    order = np.argsort(predictions, kind="stable")
    groups = np.array_split(order, bins)
    knots = np.array([np.median(predictions[g]) for g in groups])
    means = np.array([residuals[g].mean() for g in groups])
    overall = residuals.mean()
    floor = _FLOOR_SHARE * overall if overall > 0 else 1.0
    # Bins can share a median when many predictions are equal; keep one knot per value.
    knots, first = np.unique(knots, return_index=True)
    return knots, np.maximum(means[first], floor)


def calibrate_run(
    run, labels: np.ndarray, predictions: np.ndarray, train_labels: np.ndarray, train_predictions: np.ndarray, seed: int
) -> None:
    """Give a freshly trained run its calibration, from its validation labels and predictions,
    with the difficulty fitted on the training split's residuals unless the model fits those far
    closer than the validation images (`TRAIN_FIT_MIN_SHARE`; then on half the validation split).

    Sets `run.calibration`; runs whose validation split is too small get none (intervals then
    say so).
    """
    labels, predictions = np.asarray(labels, np.float64).reshape(-1), np.asarray(predictions, np.float64).reshape(-1)
    train_labels = np.asarray(train_labels, np.float64).reshape(-1)
    train_predictions = np.asarray(train_predictions, np.float64).reshape(-1)
    everything = np.concatenate([labels, train_labels])
    train_error = float(np.mean(np.abs(train_labels - train_predictions))) if len(train_labels) else 0.0
    val_error = float(np.mean(np.abs(labels - predictions))) if len(labels) else 0.0
    from_training = len(train_labels) >= 4 and train_error >= TRAIN_FIT_MIN_SHARE * val_error and np.isfinite(train_error)
    try:
        run.calibration = calibrate(
            labels,
            predictions,
            np.random.default_rng([seed, 13]),
            label_range=(float(everything.min()), float(everything.max())),
            difficulty_data=(train_labels, train_predictions) if from_training else None,
            fit_on="training",
        )
    except Img2NumError:
        run.calibration = None


def interval_metrics(labels: np.ndarray, interval: Interval, level: float) -> dict[str, float]:
    """The empirical coverage and mean width of intervals on labelled data.

    Returns:
        `interval_level`, `coverage` (share of labels inside [lower, upper]) and `mean_width`.
    """
    labels = np.asarray(labels, np.float64).reshape(-1)
    lower, upper = np.asarray(interval.lower, np.float64), np.asarray(interval.upper, np.float64)
    inside = (lower <= labels) & (labels <= upper)
    return {"interval_level": float(level), "coverage": float(inside.mean()), "mean_width": float((upper - lower).mean())}


def save_calibration(folder: Path, calibration: Calibration | None) -> None:
    """Write `calibration.json` into a run folder (nothing when there is no calibration)."""
    from img2num.io import write_json

    if calibration is not None:
        write_json(Path(folder) / CALIBRATION_FILE, calibration.to_dict())


def load_calibration(folder: Path) -> Calibration | None:
    """Read a run folder's `calibration.json`; None for runs saved without one.

    Raises:
        Img2NumError: The file exists but is corrupt.
    """
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise Img2NumError(f"{path}: corrupt calibration ({error})") from None


def require(calibration: Calibration | None, run_path) -> Calibration:
    """The run's calibration, or a one-line error for runs saved without one."""
    if calibration is None:
        where = f"{run_path}: " if run_path is not None else ""
        raise Img2NumError(
            f"{where}this run has no interval calibration (trained before intervals existed, or with too "
            "small a validation split); retrain it to get intervals"
        )
    return calibration


def grid_bounds(run, predictions: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray] | None:
    """Interval bounds for the prediction grid, or None when the run cannot give them."""
    try:
        _, lower, upper = run.interval(predictions, level)
    except Img2NumError:
        return None
    return lower, upper


# Levels `compare` reports coverage at.
REPORT_LEVELS = (0.8, 0.9, 0.95)


def coverage_record(run, data) -> dict | None:
    """Coverage and mean width of a run's intervals on labelled data at each of `REPORT_LEVELS`
    (those its calibration set is large enough for), keyed by level; None without calibration."""
    if run.calibration is None:
        return None
    predictions = run.predict_data(data)
    record = {}
    for level in REPORT_LEVELS:
        try:
            record[str(level)] = interval_metrics(data.y, run.interval(predictions, level), level)
        except Img2NumError:
            continue
    return record


def coverage_cells(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """A table of test coverage and mean width per model (means over seeds) for `compare`'s
    reports, or None when no model has intervals."""
    grouped: dict[str, list[dict]] = {}
    for entry in summary["entries"]:
        if entry.get("intervals"):
            grouped.setdefault(entry["name"], []).append(entry["intervals"])
    if not grouped:
        return None
    header = ["model"] + [f"{name} {float(level):.0%}" for level in REPORT_LEVELS for name in ("coverage", "width")]
    rows = []
    for name, records in grouped.items():
        cells = [name]
        for level in map(str, REPORT_LEVELS):
            found = [r[level] for r in records if level in r]
            cells += [f"{np.mean([r['coverage'] for r in found]):.3f}", f"{np.mean([r['mean_width'] for r in found]):.4g}"] if found else ["", ""]
        rows.append(cells)
    return header, rows


def coverage_markdown(summary: dict) -> str:
    """`coverage_cells` as a markdown section, or "" when no model has intervals."""
    table = coverage_cells(summary)
    if table is None:
        return ""
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return f"## Prediction intervals\n\n{COVERAGE_TEXT}\n\n" + "\n".join(lines) + "\n"


COVERAGE_TEXT = (
    "Share of test images whose true value lies inside the model's prediction interval (coverage) and the "
    "intervals' mean width, at each level; the intervals are calibrated on the validation split (see "
    "docs/intervals.md)."
)
