"""Baselines that need no Keras: the training mean, and ridge regression on downsampled pixels.

Both follow scikit-learn's contract: the constructor stores parameters, `fit` returns the
estimator, fitted state ends in `_`, and `predict` before `fit` is a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from img2num.errors import Img2NumError

# Penalties relative to the mean eigenvalue of the centred feature Gram matrix, so one grid
# serves any pixel scale and image size.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-6, 2, 17))
# Images are averaged down to at most this many pixels a side before ridge sees them.
DEFAULT_RIDGE_SIZE = 16
_CHUNK = 256


class MeanBaseline:
    """Predicts the mean training label for every image."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> MeanBaseline:
        """Store the mean of `y`; `x` is only checked for its length.

        Returns:
            The fitted baseline.
        """
        y = _labels(x, y)
        self.mean_ = float(y.mean())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The training mean for each image in `x`, float32 of shape (N,).

        Raises:
            Img2NumError: The baseline is not fitted.
        """
        _check_fitted(self, "mean_")
        return np.full(len(x), self.mean_, dtype=np.float32)

    def parameter_count(self) -> int:
        """Numbers learned from the data: one."""
        return 1


class RidgeBaseline:
    """Ridge regression on block-averaged pixels, solved in closed form.

    The penalty is chosen from `alphas` by the mean squared error on validation data given to
    `fit`, or by exact leave-one-out error on the training data when none is given. Each alpha
    is relative: the penalty added to X^T X is alpha times its mean eigenvalue (X centred).

    Args:
        size: Images are averaged down to at most `size` x `size` pixels (per channel).
        alphas: Candidate relative penalties, all positive.
    """

    def __init__(self, size: int = DEFAULT_RIDGE_SIZE, alphas: Sequence[float] = DEFAULT_ALPHAS) -> None:
        self.size = size
        self.alphas = alphas

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> RidgeBaseline:
        """Fit on (`x`, `y`), choosing the penalty on (`x_val`, `y_val`) when given.

        Args:
            x: Training images (N, H, W) or (N, H, W, C).
            y: Training labels (N,).
            x_val: Validation images, or None.
            y_val: Validation labels, or None.

        Returns:
            The fitted estimator, with `alpha_`, `coef_`, `intercept_`, `validation_mse_`
            (the error of each alpha: on validation data, or leave-one-out) and `input_shape_`.

        Raises:
            Img2NumError: Bad parameters, or labels that do not match the images.
        """
        alphas = np.asarray(self.alphas, dtype=np.float64).reshape(-1)
        if alphas.size == 0 or not np.all(alphas > 0) or not np.all(np.isfinite(alphas)):
            raise Img2NumError(f"ridge alphas must be positive finite numbers, got {list(self.alphas)}")
        if int(self.size) < 1:
            raise Img2NumError(f"ridge size must be at least 1, got {self.size}")
        y = _labels(x, y)
        features = pixel_features(x, self.size)
        self.input_shape_ = tuple(np.shape(x)[1:])
        self.feature_mean_ = features.mean(axis=0)
        y_mean = y.mean()
        u, s, vt = np.linalg.svd(features - self.feature_mean_, full_matrices=False)
        projected = u.T @ (y - y_mean)
        scale = (s**2).sum() / features.shape[1]
        penalties = alphas * scale if scale > 0 else alphas
        # One column of coefficients per candidate penalty, from the same decomposition.
        shrink = s[:, None] / (s[:, None] ** 2 + penalties[None, :])
        coefs = vt.T @ (shrink * projected[:, None])
        if x_val is not None and y_val is not None:
            y_val = _labels(x_val, y_val)
            errors = (pixel_features(x_val, self.size) - self.feature_mean_) @ coefs + y_mean - y_val[:, None]
            scores = (errors**2).mean(axis=0)
        else:
            # Exact leave-one-out residuals: r_i / (1 - h_ii), the intercept adding 1/n to h_ii.
            residuals = (y - y_mean)[:, None] - (u * s) @ (shrink * projected[:, None])
            leverage = (u**2) @ (s[:, None] ** 2 / (s[:, None] ** 2 + penalties[None, :])) + 1.0 / len(y)
            scores = ((residuals / np.maximum(1.0 - leverage, 1e-12)) ** 2).mean(axis=0)
        best = int(np.argmin(scores))
        self.alpha_ = float(alphas[best])
        self.validation_mse_ = scores
        self.coef_ = coefs[:, best]
        self.intercept_ = float(y_mean - self.feature_mean_ @ self.coef_)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for images of the training shape, float32 of shape (N,).

        Raises:
            Img2NumError: The estimator is not fitted, or the images have another shape.
        """
        _check_fitted(self, "coef_")
        if tuple(np.shape(x)[1:]) != self.input_shape_:
            raise Img2NumError(
                f"images have shape {tuple(np.shape(x)[1:])}; this ridge baseline was fitted on {self.input_shape_}"
            )
        return (pixel_features(x, self.size) @ self.coef_ + self.intercept_).astype(np.float32)

    def parameter_count(self) -> int:
        """Numbers learned from the data: the coefficients and the intercept."""
        _check_fitted(self, "coef_")
        return int(self.coef_.size) + 1


def pixel_features(x: np.ndarray, size: int) -> np.ndarray:
    """Images (N, H, W[, C]) averaged over blocks to at most `size` a side, flattened to float64.

    A side that does not divide evenly gets blocks whose widths differ by at most one pixel.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    rows = _edges(x.shape[1], size)
    cols = _edges(x.shape[2], size)
    out = np.empty((len(x), len(rows) - 1, len(cols) - 1, x.shape[3]))
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK].astype(np.float64)
        chunk = np.add.reduceat(chunk, rows[:-1], axis=1) / np.diff(rows)[None, :, None, None]
        chunk = np.add.reduceat(chunk, cols[:-1], axis=2) / np.diff(cols)[None, None, :, None]
        out[start : start + _CHUNK] = chunk
    return out.reshape(len(x), -1)


def _edges(length: int, size: int) -> np.ndarray:
    # With at most `length` blocks every block spans at least one pixel, so edges strictly rise.
    return np.linspace(0, length, min(length, int(size)) + 1).round().astype(np.int64)


def _labels(x, y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != len(x) or len(y) == 0:
        raise Img2NumError(f"need one label per image and at least one image, got {len(y)} labels for {len(x)} images")
    return y


def _check_fitted(estimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise Img2NumError(f"{type(estimator).__name__} is not fitted yet; call fit(x, y) before predict")
