"""Exact Bayes-optimal errors of the synthetic tasks (points, dust): the best any model can do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from img2num.errors import Img2NumError


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
    if height < 1 or width < 1:
        raise Img2NumError(f"image size must be at least 1x1, got {height}x{width}")
    label_max = pixels - 1 if label_max is None else label_max
    if not 0 <= label_min <= label_max:
        raise Img2NumError(f"label range must satisfy 0 <= min <= max, got {label_min}..{label_max}")
    labels = np.arange(label_min, label_max + 1, dtype=np.float64)
    joint = occupancy_distribution(label_max, pixels)[label_min:] / len(labels)
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
