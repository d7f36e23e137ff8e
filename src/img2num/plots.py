"""Every picture img2num draws: sample and prediction grids, loss curves, prediction diagnostics (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from img2num.config import GRID_COLS, GRID_ROWS
from img2num.io import atomic_path


def sample_grid(
    x: np.ndarray,
    y: np.ndarray | None,
    path: str | Path,
    predictions: np.ndarray | None = None,
    title: str | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Draw the first 25 images in a 5x5 grid, titled `R <label>` or `R <label> P <prediction>`,
    with `[lower, upper]` below when `bounds` are given.

    Args:
        x: Images (N, H, W, C).
        y: True values, or None to leave them out.
        path: PNG file to write.
        predictions: Predicted values, shown with one decimal, or None.
        title: Title over the whole grid.
        bounds: Lower and upper interval bounds of the predictions, or None.

    Returns:
        The path written.
    """
    return _save(sample_grid_figure(x, y, predictions, title, bounds), path)


def sample_grid_figure(
    x: np.ndarray,
    y: np.ndarray | None,
    predictions: np.ndarray | None = None,
    title: str | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """The figure that `sample_grid` saves."""
    fig = Figure(figsize=(10, 10.6 if title else 10))
    axes = fig.subplots(GRID_ROWS, GRID_COLS, squeeze=False).reshape(-1)
    for index, ax in enumerate(axes):
        ax.axis("off")
        if index >= len(x):
            continue
        image = _displayable(x[index])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        words = []
        if y is not None:
            words.append(f"R {_format_label(y[index])}")
        if predictions is not None:
            words.append(f"P {predictions[index]:.1f}")
        if bounds is not None:
            words.append(f"\n[{bounds[0][index]:.1f}, {bounds[1][index]:.1f}]")
        ax.set_title(" ".join(words), fontsize=11 if bounds is None else 10)
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def loss_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Draw training and validation loss per epoch.

    Args:
        history: Per-epoch records with `epoch`, `loss` and `val_loss`.
        path: PNG file to write.
        title: Title of the plot, such as the model's name.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(7, 4.5))
    _draw_losses(fig.subplots(), history, title)
    return _save(fig, path)


def compare_loss_curves(
    histories: dict[str, list[dict]],
    path: str | Path,
    reference_mse: float | None = None,
    other_seeds: dict[str, list[list[dict]]] | None = None,
) -> Path:
    """Draw several models' loss curves side by side on one shared loss axis.

    Args:
        histories: Per-epoch records of each model, keyed by model name.
        path: PNG file to write.
        reference_mse: The best MSE possible on the task, drawn as a horizontal line, or None.
        other_seeds: Further histories of each model (other seeds); their validation loss is
            drawn as thin lines.

    Returns:
        The path written.
    """
    return _save(compare_loss_curves_figure(histories, reference_mse, other_seeds), path)


def compare_loss_curves_figure(
    histories: dict[str, list[dict]],
    reference_mse: float | None = None,
    other_seeds: dict[str, list[list[dict]]] | None = None,
) -> Figure:
    """The figure that `compare_loss_curves` saves."""
    width = 6 if len(histories) <= 3 else 4.5
    fig = Figure(figsize=(width * len(histories), 4.5))
    axes = fig.subplots(1, len(histories), sharey=True, squeeze=False)[0]
    for ax, (name, history) in zip(axes, histories.items()):
        for index, other in enumerate((other_seeds or {}).get(name, [])):
            ax.plot(
                [row["epoch"] for row in other],
                [row["val_loss"] for row in other],
                color="C1",
                alpha=0.35,
                linewidth=1,
                label="validation, other seeds" if index == 0 else None,
            )
        _draw_losses(ax, history, name, reference_mse)
    return fig


def diagnostics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: str | Path,
    title: str = "",
    reference_pred: np.ndarray | None = None,
) -> Path:
    """Draw predicted against true, residuals against true, and the error by range of the true value.

    Args:
        y_true: True values (N,).
        y_pred: Predictions (N,).
        path: PNG file to write.
        title: Title over the three panels, such as the model's name.
        reference_pred: The best possible predictions of the same images, when known; their
            error by range is drawn beside the model's.

    Returns:
        The path written.
    """
    return _save(diagnostics_figure(y_true, y_pred, title, reference_pred), path)


def diagnostics_figure(
    y_true: np.ndarray, y_pred: np.ndarray, title: str = "", reference_pred: np.ndarray | None = None
) -> Figure:
    """The figure that `diagnostics` saves: three panels in a row."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    fig = Figure(figsize=(16, 4.8))
    scatter, residual, ranges = fig.subplots(1, 3)
    low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    scatter.scatter(y_true, y_pred, s=10, alpha=0.6)
    scatter.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
    scatter.set_xlabel("true value")
    scatter.set_ylabel("predicted value")
    scatter.set_title("predicted against true")
    scatter.legend(loc="upper left")

    residual.scatter(y_true, y_pred - y_true, s=10, alpha=0.6)
    residual.axhline(0.0, color="black", linewidth=1)
    residual.set_xlabel("true value")
    residual.set_ylabel("residual (predicted - true)")
    residual.set_title("residuals")

    edges, rmse, counts = error_by_range(y_true, y_pred)
    centres = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges) * 0.9
    ranges.bar(centres, rmse, width=widths, alpha=0.7, label="model")
    if reference_pred is not None:
        _, best, _ = error_by_range(y_true, reference_pred, edges)
        ranges.plot(centres, best, "o-", color="black", label="best possible (Bayes)")
        ranges.legend(loc="upper left")
    for x, height, count in zip(centres, rmse, counts):
        if count:
            ranges.annotate(f"n={count}", (x, height), ha="center", va="bottom", fontsize=8)
    ranges.set_xlabel("true value (bins of equal width)")
    ranges.set_ylabel("RMSE in the bin")
    ranges.set_title("error by range of the true value")
    for ax in (scatter, residual, ranges):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def error_by_range(
    y_true: np.ndarray, y_pred: np.ndarray, edges: np.ndarray | None = None, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root mean squared error within equal-width bins of the true value.

    Args:
        y_true: True values (N,).
        y_pred: Predictions (N,).
        edges: Bin edges to use; default `bins` equal bins from the smallest to the largest value.
        bins: Number of bins when `edges` is not given.

    Returns:
        The bin edges, the RMSE of each bin (NaN for an empty bin) and the count in each bin.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    error = np.asarray(y_pred, dtype=np.float64).reshape(-1) - y_true
    if edges is None:
        low, high = float(y_true.min()), float(y_true.max())
        edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, y_true, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    sums = np.bincount(index, weights=error**2, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(sums / counts)
    return np.asarray(edges), rmse, counts


def worst_predictions(
    x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, title: str | None = None
) -> Path:
    """Draw the 25 images with the largest absolute error, worst first, titled `R <label> P <prediction>`.

    Returns:
        The path written.
    """
    order = worst_indices(y_true, y_pred)
    return _save(sample_grid_figure(x[order], np.asarray(y_true)[order], np.asarray(y_pred)[order], title), path)


def worst_indices(y_true: np.ndarray, y_pred: np.ndarray, count: int = GRID_ROWS * GRID_COLS) -> np.ndarray:
    """Indices of the `count` largest absolute errors, largest first (ties by index)."""
    error = np.abs(np.asarray(y_pred, dtype=np.float64).reshape(-1) - np.asarray(y_true, dtype=np.float64).reshape(-1))
    return np.argsort(-error, kind="stable")[:count]


def _draw_losses(ax, history: list[dict], title: str, reference_mse: float | None = None) -> None:
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["loss"] for row in history], label="train")
    ax.plot(epochs, [row["val_loss"] for row in history], label="validation")
    if reference_mse is not None and reference_mse > 0:
        ax.axhline(reference_mse, color="black", linestyle="--", linewidth=1, label=f"best possible ({reference_mse:.4g})")
    # Losses fall over orders of magnitude; a log axis shows the start and the gap at the end.
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")


def _displayable(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8 and image.max() > 1:
        image = image / 255.0
    elif image.dtype == np.uint16 and image.max() > 1:
        image = image / 65535.0
    image = np.clip(image.astype(np.float32), 0.0, 1.0)
    if image.shape[-1] == 3:
        return image
    return image[..., 0]


def _format_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _save(fig: Figure, path: str | Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return Path(path)
