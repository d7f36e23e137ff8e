"""Every picture img2num draws: sample grids, prediction grids and loss curves (PNG)."""

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
) -> Path:
    """Draw the first 25 images in a 5x5 grid, titled `R <label>` or `R <label> P <prediction>`.

    Args:
        x: Images (N, H, W, C).
        y: True values, or None to leave them out.
        path: PNG file to write.
        predictions: Predicted values, shown with one decimal, or None.
        title: Title over the whole grid.

    Returns:
        The path written.
    """
    return _save(sample_grid_figure(x, y, predictions, title), path)


def sample_grid_figure(
    x: np.ndarray,
    y: np.ndarray | None,
    predictions: np.ndarray | None = None,
    title: str | None = None,
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
        ax.set_title(" ".join(words), fontsize=11)
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


def compare_loss_curves(histories: dict[str, list[dict]], path: str | Path) -> Path:
    """Draw several models' loss curves side by side on one shared loss axis.

    Args:
        histories: Per-epoch records of each model, keyed by model name.
        path: PNG file to write.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(6 * len(histories), 4.5))
    axes = fig.subplots(1, len(histories), sharey=True, squeeze=False)[0]
    for ax, (name, history) in zip(axes, histories.items()):
        _draw_losses(ax, history, name)
    return _save(fig, path)


def _draw_losses(ax, history: list[dict], title: str) -> None:
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["loss"] for row in history], label="train")
    ax.plot(epochs, [row["val_loss"] for row in history], label="validation")
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
