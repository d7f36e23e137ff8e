"""Exact Bayes-optimal errors and prediction intervals of the synthetic tasks (points, dust): the
best any model can do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from img2num.errors import Img2NumError
from img2num.intervals import check_level


@dataclass(frozen=True)
class BayesReference:
    """The Bayes-optimal predictor of the points task and its expected squared error.

    Attributes:
        mse: Expected squared error of the best possible prediction of n from the image.
        posterior_mean: Best prediction for each number of lit pixels k (index k).
        lit_probability: Probability of each number of lit pixels k under the label prior.
    """

    mse: float
    posterior_mean: np.ndarray
    lit_probability: np.ndarray

    def predict(self, lit_pixels: np.ndarray) -> np.ndarray:
        """The Bayes-optimal prediction for images with the given numbers of lit pixels."""
        return self.posterior_mean[np.asarray(lit_pixels, dtype=np.int64)]


def occupancy_distribution(max_points: int, pixels: int) -> np.ndarray:
    """Distribution of the number of distinct pixels lit by n points, for every n.

    Each point lands on a uniformly drawn pixel of `pixels`, independently of the others.

    Args:
        max_points: Largest number of points n.
        pixels: Number of pixels in the image.

    Returns:
        Array of shape (max_points + 1, pixels + 1); row n is P(k lit pixels | n points).
    """
    table = np.zeros((max_points + 1, pixels + 1))
    table[0, 0] = 1.0
    lit = np.arange(pixels + 1)
    for n in range(1, max_points + 1):
        previous = table[n - 1]
        # The n-th point lands on a lit pixel (k stays) or on one of the pixels - k unlit ones.
        table[n] = previous * lit / pixels
        table[n, 1:] += previous[:-1] * (pixels - lit[:-1]) / pixels
    return table


def points_bayes_reference(
    height: int = 16, width: int = 16, label_min: int = 0, label_max: int | None = None
) -> BayesReference:
    """The exact Bayes reference of the points task.

    The image shows which pixels are lit, and by symmetry only their count k carries
    information about n. With n uniform on `label_min..label_max`, the best guess from k is the
    posterior mean E[n | k], and its expected squared error is E[Var(n | k)].

    Args:
        height: Image height.
        width: Image width.
        label_min: Smallest number of points.
        label_max: Largest number of points; default height * width - 1, as the generator draws.

    Returns:
        The reference: its MSE, the posterior mean for each k and the distribution of k.

    Raises:
        Img2NumError: The size or the label range is invalid.
    """
    pixels = height * width
    labels, joint = _points_joint(height, width, label_min, label_max)
    label_max = int(labels[-1])
    lit_probability = joint.sum(axis=0)
    seen = lit_probability > 0
    posterior_mean = np.zeros(pixels + 1)
    posterior_mean[seen] = (labels @ joint)[seen] / lit_probability[seen]
    # Points beyond the image's capacity never occur; predict the label nearest to them.
    posterior_mean[~seen] = np.clip(np.flatnonzero(~seen), label_min, label_max)
    squared_error = (labels[:, None] - posterior_mean[None, :]) ** 2
    mse = float((joint * squared_error).sum())
    return BayesReference(mse, posterior_mean, lit_probability)


def dust_bayes_reference(cells: int) -> BayesReference:
    """The exact Bayes reference of the dust task, with labels in percent.

    The dust rate p is uniform on [0, 1] and each of the `cells` cells is dusty with chance p,
    independently, so the number K of dusty cells is binomial and, averaged over p, uniform on
    0..cells. Every cell is recognisable in the image and, given K, where the dust lies and the
    lighting and noise say nothing more about p. With a uniform prior, p given K follows
    Beta(K + 1, cells - K + 1): the best guess is (K + 1) / (cells + 2), and the expected
    squared error is 1 / (6 (cells + 2)), times 100^2 for percent.

    Args:
        cells: Number of dust cells in an image.

    Returns:
        The reference: its MSE, the best prediction for each K, and the distribution of K.

    Raises:
        Img2NumError: `cells` is below 1.
    """
    if cells < 1:
        raise Img2NumError(f"the dust task needs at least 1 cell, got {cells}")
    dusty = np.arange(cells + 1)
    posterior_mean = 100.0 * (dusty + 1) / (cells + 2)
    return BayesReference(1e4 / (6 * (cells + 2)), posterior_mean, np.full(cells + 1, 1.0 / (cells + 1)))


def _points_joint(height: int, width: int, label_min: int, label_max: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The labels n and the joint distribution P(n, k lit pixels) of the points task (rows n)."""
    pixels = height * width
    if height < 1 or width < 1:
        raise Img2NumError(f"image size must be at least 1x1, got {height}x{width}")
    label_max = pixels - 1 if label_max is None else label_max
    if not 0 <= label_min <= label_max:
        raise Img2NumError(f"label range must satisfy 0 <= min <= max, got {label_min}..{label_max}")
    labels = np.arange(label_min, label_max + 1, dtype=np.float64)
    return labels, occupancy_distribution(label_max, pixels)[label_min:] / len(labels)


@dataclass(frozen=True)
class BayesIntervals:
    """The shortest posterior intervals of a synthetic task at one level, for every value of the
    statistic the Bayes rule reads off the image (lit pixels k, or dusty cells K).

    Attributes:
        level: The level asked for.
        lower: Lower bound for each statistic value (index).
        upper: Upper bound for each statistic value.
        coverage: Exact expected coverage over the task's images (at least `level`; above it
            when the labels are whole numbers and no set of them holds exactly `level`).
        mean_width: Exact expected width (upper - lower) over the task's images.
    """

    level: float
    lower: np.ndarray
    upper: np.ndarray
    coverage: float
    mean_width: float

    def interval(self, statistic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bounds for images with the given statistic values."""
        index = np.asarray(statistic, dtype=np.int64)
        return self.lower[index], self.upper[index]


def points_bayes_intervals(
    level: float, height: int = 16, width: int = 16, label_min: int = 0, label_max: int | None = None
) -> BayesIntervals:
    """The narrowest intervals with the asked coverage for every image of the points task.

    Given k lit pixels, n follows the exact posterior P(n | k). For each k the interval [a, b]
    is the shortest run of whole numbers whose posterior mass reaches `level` (of those, the
    one holding most mass); its width is b - a. Each image's own coverage is then at least
    `level`, which no narrower interval achieves.

    Args:
        level: Coverage, strictly between 0 and 1.
        height: Image height.
        width: Image width.
        label_min: Smallest number of points.
        label_max: Largest number of points; default height * width - 1.

    Returns:
        The intervals for k = 0 .. height * width, with their exact coverage and mean width.

    Raises:
        Img2NumError: The level, the size or the label range is invalid.
    """
    check_level(level)
    labels, joint = _points_joint(height, width, label_min, label_max)
    lit_probability = joint.sum(axis=0)
    lower = np.zeros(joint.shape[1])
    upper = np.zeros(joint.shape[1])
    covered = np.zeros(joint.shape[1])
    for k in np.flatnonzero(lit_probability > 0):
        posterior = joint[:, k] / lit_probability[k]
        cumulative = np.cumsum(posterior)
        before = np.concatenate([[0.0], cumulative[:-1]])
        # For each start a, the first end b whose run a..b holds `level` (a float slack of 1e-12).
        end = np.searchsorted(cumulative, before + level - 1e-12, side="left")
        ok = end < len(labels)
        starts = np.flatnonzero(ok)
        widths = end[ok] - starts
        mass = cumulative[end[ok]] - before[ok]
        best = np.lexsort((-mass, widths))[0]
        a, b = starts[best], end[ok][best]
        lower[k], upper[k], covered[k] = labels[a], labels[b], mass[best]
    unseen = lit_probability == 0
    lower[unseen] = upper[unseen] = np.clip(np.flatnonzero(unseen), labels[0], labels[-1])
    return BayesIntervals(
        float(level), lower, upper, float(lit_probability @ covered), float(lit_probability @ (upper - lower))
    )


def dust_bayes_intervals(level: float, cells: int) -> BayesIntervals:
    """The narrowest intervals with the asked coverage for every image of the dust task, in percent.

    Given K dusty cells of `cells`, the dust rate follows Beta(K + 1, cells - K + 1); its highest
    posterior density interval is the shortest with posterior mass `level`, so each image's
    coverage is exactly `level`. Found by minimizing ppf(t + level) - ppf(t) over the lower tail
    t (golden section; the width is unimodal in t for a unimodal density).

    Args:
        level: Coverage, strictly between 0 and 1.
        cells: Number of dust cells in an image.

    Returns:
        The intervals for K = 0 .. cells, with their coverage (`level`) and exact mean width
        (K is uniform on 0 .. cells).

    Raises:
        Img2NumError: The level is invalid or `cells` is below 1.
    """
    from scipy.stats import beta

    check_level(level)
    if cells < 1:
        raise Img2NumError(f"the dust task needs at least 1 cell, got {cells}")
    dusty = np.arange(cells + 1)
    posterior = beta(dusty + 1, cells - dusty + 1)

    def width(tail):
        return posterior.ppf(tail + level) - posterior.ppf(tail)

    low, high = np.zeros(cells + 1), np.full(cells + 1, 1.0 - level)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):  # the bracket shrinks to 0.618^60 of 1 - level, below 1e-12
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        shrink_right = width(left) <= width(right)
        high = np.where(shrink_right, right, high)
        low = np.where(shrink_right, low, left)
    tail = (low + high) / 2
    lower, upper = 100 * posterior.ppf(tail), 100 * posterior.ppf(tail + level)
    return BayesIntervals(float(level), lower, upper, float(level), float(np.mean(upper - lower)))
