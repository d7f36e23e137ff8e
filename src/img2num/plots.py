"""Every picture img2num draws: sample and prediction grids, loss curves, prediction diagnostics,
scores per group, predictions over a video's time, prediction maps (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from img2num.config import GRID_COLS, GRID_ROWS
from img2num.io import atomic_path

# Pictures are written at 80 dots per inch. Layouts are fixed in inches: matplotlib's tight
# layout measured every text of every subplot and took most of the drawing time.
_DPI = 80
# The sample grid: margin around the grid, title band above each image, gap between images.
_GRID_MARGIN = 0.15
_CELL_TITLE = 0.3
# The band for the grid's own title, over the cells' titles.
_GRID_TITLE = 0.45
_CELL_GAP = 0.15
_TITLE_PAD = 0.06
_CELL_TITLE_ID = "cell title"


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
    """The figure that `sample_grid` saves, at 80 dpi: one mosaic image of the 25 cells, each
    image titled above it (`grid_titles` reads the titles back).

    One image and 26 texts draw several times faster than 25 subplots with tight layout did
    (docs/speed.md); the images are scaled to their cells by nearest neighbour, as `imshow`
    drew them.
    """
    width, height = 10.0, 10.6 if title else 10.0
    fig = Figure(figsize=(width, height), dpi=_DPI)
    top = (_GRID_TITLE if title else _GRID_MARGIN) * _DPI
    cell_w = (width * _DPI - 2 * _GRID_MARGIN * _DPI) / GRID_COLS
    cell_h = (height * _DPI - top - _GRID_MARGIN * _DPI) / GRID_ROWS
    title_h = _CELL_TITLE * (1.7 if bounds is not None else 1.0)  # an interval adds a second line
    box_w, box_h = cell_w - _CELL_GAP * _DPI, cell_h - title_h * _DPI
    pixels_h, pixels_w = round(height * _DPI), round(width * _DPI)
    mosaic = np.full((pixels_h, pixels_w, 3), 255, np.uint8)
    for index in range(min(len(x), GRID_ROWS * GRID_COLS)):
        image = _displayable(x[index])
        if image.ndim == 2:
            image = image[..., np.newaxis]
        scale = min(box_w / image.shape[1], box_h / image.shape[0])
        shown_h, shown_w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
        row, col = divmod(index, GRID_COLS)
        left = round(_GRID_MARGIN * _DPI + col * cell_w + (cell_w - shown_w) / 2)
        upper = round(top + row * cell_h + title_h * _DPI + (box_h - shown_h) / 2)
        mosaic[upper : upper + shown_h, left : left + shown_w] = np.round(_nearest(image, shown_h, shown_w) * 255)
        words = []
        if y is not None:
            words.append(f"R {_format_label(y[index])}")
        if predictions is not None:
            words.append(f"P {predictions[index]:.1f}")
        if bounds is not None:
            words.append(f"\n[{bounds[0][index]:.1f}, {bounds[1][index]:.1f}]")
        centre, bottom = (left + shown_w / 2) / pixels_w, 1 - (upper - _TITLE_PAD * _DPI) / pixels_h
        fig.text(centre, bottom, " ".join(words), ha="center", va="bottom", fontsize=11 if bounds is None else 10,
                 gid=_CELL_TITLE_ID)
    # Placed pixel for pixel, without resampling: the figure is saved at its own dpi.
    fig.figimage(mosaic, origin="upper")
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def grid_titles(fig: Figure) -> list[str]:
    """The cell titles of a `sample_grid_figure`, in reading order (one per image drawn)."""
    return [text.get_text() for text in fig.texts if text.get_gid() == _CELL_TITLE_ID]


def loss_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Draw training and validation loss per epoch.

    Args:
        history: Per-epoch records with `epoch`, `loss` and `val_loss`.
        path: PNG file to write.
        title: Title of the plot, such as the model's name.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(7, 4.5), dpi=_DPI)
    _draw_losses(fig.subplots(gridspec_kw=_margins(fig, 1)), history, title)
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
    fig = Figure(figsize=(width * len(histories), 4.5), dpi=_DPI)
    axes = fig.subplots(1, len(histories), sharey=True, squeeze=False, gridspec_kw=_margins(fig, len(histories)))[0]
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
    fig = Figure(figsize=(16, 4.8), dpi=_DPI)
    scatter, residual, ranges = fig.subplots(1, 3, gridspec_kw=_margins(fig, 3, top=0.75 if title else 0.35))
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


def group_scores(by_group: dict, path: str | Path, title: str = "", shown: int = 40) -> Path:
    """Draw each group's MSE for every model and baseline: one row per group (worst at the
    top), one marker per entry, so the camera or site a model fails on stands out.

    Args:
        by_group: Per-group results (`img2num.crossval.group_summary`): `column`, `groups`
            in order, `samples`, and `scores` (entry name -> group -> metrics).
        path: PNG file to write.
        title: The picture's title.
        shown: Draw at most this many groups, the first in order (the worst).

    Returns:
        The path written.
    """
    return _save(group_scores_figure(by_group, title, shown), path)


def group_scores_figure(by_group: dict, title: str = "", shown: int = 40) -> Figure:
    """The figure that `group_scores` saves."""
    groups = by_group["groups"][:shown]
    names = list(by_group["scores"])
    height = 1.2 + 0.3 * len(groups)
    fig = Figure(figsize=(8, max(height, 2.5)), dpi=_DPI)
    labels = [f"{group} ({by_group['samples'][group]})" for group in groups]
    left = min(0.3 + 0.075 * max(len(label) for label in labels), 3.5)
    ax = fig.add_axes(_axes_box(fig, left=left, right=1.9, bottom=0.55, top=0.4))
    rows = np.arange(len(groups))[::-1]  # the worst group at the top
    markers = "osD^v<>ph*"
    values = []
    for index, name in enumerate(names):
        scores = by_group["scores"][name]
        mse = np.array([scores[g]["mse"] if g in scores else np.nan for g in groups])
        values.append(mse)
        ax.plot(mse, rows, linestyle="none", marker=markers[index % len(markers)], color=f"C{index % 10}", label=name, alpha=0.85)
    ax.set_yticks(rows, [label[:40] for label in labels])
    found = np.concatenate(values) if values else np.array([])
    found = found[np.isfinite(found) & (found > 0)]
    if len(found) and found.max() > 20 * found.min():
        ax.set_xscale("log")
    ax.set_xlabel(f"{by_group['split']} MSE")
    ax.set_ylabel(f"{by_group['column']} (samples)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(groups) - 0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    more = len(by_group["groups"]) - len(groups)
    ax.set_title(title + (f" (the {len(groups)} worst of {len(by_group['groups'])} groups)" if more > 0 else ""), fontsize="medium")
    return fig


def time_series(series: list[dict], path: str | Path, title: str = "") -> Path:
    """Draw predictions against time, one line per video, with the interval band where given
    and a gap (and a mark on the time axis) where a frame could not be used.

    Args:
        series: Per video: `name`, `times` (seconds), `predictions`, optional `lower` and
            `upper`, and `gaps` (seconds of the frames that could not be used).
        path: PNG file to write.
        title: The picture's title.

    Returns:
        The path written.
    """
    return _save(time_series_figure(series, title), path)


def time_series_figure(series: list[dict], title: str = "") -> Figure:
    """The figure that `time_series` saves."""
    fig = Figure(figsize=(9, 3.6), dpi=_DPI)
    ax = fig.add_axes(_axes_box(fig, left=0.8, right=0.25, bottom=0.55, top=0.4))
    longest = max((float(np.max(item["times"])) for item in series if len(item["times"])), default=0.0)
    scale, unit = (3600.0, "hours") if longest >= 3 * 3600 else (60.0, "minutes") if longest >= 180 else (1.0, "seconds")
    for index, item in enumerate(series):
        colour = f"C{index % 10}"
        times = np.asarray(item["times"], np.float64)
        gaps = np.asarray(item.get("gaps", ()), np.float64)
        # A NaN at each bad frame's time breaks the line there.
        order = np.argsort(np.concatenate([times, gaps]), kind="stable")
        x = np.concatenate([times, gaps])[order] / scale

        def with_gaps(values):
            return np.concatenate([np.asarray(values, np.float64), np.full(len(gaps), np.nan)])[order]

        if item.get("lower") is not None:
            ax.fill_between(x, with_gaps(item["lower"]), with_gaps(item["upper"]), color=colour, alpha=0.2, linewidth=0)
        ax.plot(x, with_gaps(item["predictions"]), color=colour, linewidth=1.2, label=item["name"])
        if len(gaps):
            ax.plot(gaps / scale, np.zeros(len(gaps)), linestyle="none", marker="|", color="red", markersize=8,
                    transform=ax.get_xaxis_transform(), label="bad frames" if index == 0 else None)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("prediction")
    ax.grid(alpha=0.3)
    if len(series) > 1 or any(len(item.get("gaps", ())) for item in series):
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title, fontsize="medium")
    return fig


def _axes_box(fig: Figure, left: float, right: float, bottom: float, top: float) -> list[float]:
    """One axes' [left, bottom, width, height] in figure fractions from margins in inches."""
    width, height = fig.get_size_inches()
    return [left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height]


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


def _nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` scaled to height x width by nearest neighbour (pixel centres)."""
    rows = ((np.arange(height) + 0.5) * image.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * image.shape[1] / width).astype(int)
    return image[rows[:, np.newaxis], cols]


def _format_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _margins(
    fig: Figure, panels: int, left: float = 0.8, right: float = 0.15, bottom: float = 0.55, top: float = 0.35, gap: float = 0.85
) -> dict:
    """Subplot parameters for `panels` panels in a row with fixed margins and gaps in inches,
    room for tick labels, axis labels and titles at the default font sizes."""
    width, height = fig.get_size_inches()
    panel = (width - left - right - (panels - 1) * gap) / panels
    return {
        "left": left / width,
        "right": 1 - right / width,
        "bottom": bottom / height,
        "top": 1 - top / height,
        "wspace": gap / panel,
    }


def _save(fig: Figure, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def prediction_map(grid: np.ndarray, path: str | Path, title: str = "", extent=None, units: str = "") -> Path:
    """Draw a prediction map: one colour per window, a colour bar, nodata (NaN) left blank.

    Args:
        grid: Predictions (rows, columns), NaN where there is none.
        path: PNG file to write.
        title: Title of the picture, such as the raster's name.
        extent: (left, right, bottom, top) in map coordinates for the axes, or None for pixels.
        units: Label of the axes' coordinates, such as "EPSG:32652".

    Returns:
        The path written.
    """
    rows, columns = grid.shape
    width = 7.0
    height = min(12.0, max(3.0, width * rows / max(columns, 1)))
    fig = Figure(figsize=(width + 1.2, height), dpi=_DPI)
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    shown = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high if high > low else low + 1, extent=extent, interpolation="nearest")
    fig.colorbar(shown, ax=ax, label="prediction")
    ax.set_title(title)
    ax.ticklabel_format(useOffset=False, style="plain")  # map coordinates in full, not as +4e6
    if units:
        ax.set_xlabel(units)
    fig.subplots_adjust(left=0.15, right=0.95, bottom=0.1, top=0.92)
    return _save(fig, path)
