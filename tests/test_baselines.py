"""Baselines: the training mean and ridge regression match their closed forms on small data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2num.baselines import MeanBaseline, RidgeBaseline, pixel_features
from img2num.errors import Img2NumError


def _data(n, rng, shape=(4, 4, 1)):
    x = rng.random((n, *shape))
    weights = rng.normal(size=int(np.prod(shape)))
    y = x.reshape(n, -1) @ weights + 3.0 + 0.1 * rng.normal(size=n)
    return x, y


def test_mean_baseline_predicts_the_training_mean():
    x = np.zeros((4, 2, 2, 1))
    baseline = MeanBaseline().fit(x, np.array([1.0, 2.0, 3.0, 10.0]))
    assert baseline.mean_ == 4.0
    prediction = baseline.predict(np.ones((3, 2, 2, 1)))
    assert prediction.dtype == np.float32 and prediction.tolist() == [4.0, 4.0, 4.0]
    assert baseline.parameter_count() == 1


def test_predict_before_fit_is_a_clear_error():
    for baseline in (MeanBaseline(), RidgeBaseline()):
        with pytest.raises(Img2NumError, match=f"{type(baseline).__name__} is not fitted yet; call fit"):
            baseline.predict(np.zeros((2, 4, 4, 1)))


def test_ridge_matches_the_closed_form_solution():
    rng = np.random.default_rng(0)
    x, y = _data(40, rng)
    ridge = RidgeBaseline(size=4, alphas=[0.05]).fit(x, y)
    features = x.reshape(40, -1)
    centred = features - features.mean(axis=0)
    gram = centred.T @ centred
    penalty = 0.05 * np.trace(gram) / gram.shape[0]
    coef = np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), centred.T @ (y - y.mean()))
    np.testing.assert_allclose(ridge.coef_, coef, rtol=1e-8, atol=1e-10)
    assert ridge.intercept_ == pytest.approx(y.mean() - features.mean(axis=0) @ coef)
    x_new = rng.random((5, 4, 4, 1))
    np.testing.assert_allclose(ridge.predict(x_new), x_new.reshape(5, -1) @ coef + ridge.intercept_, rtol=1e-5)
    assert ridge.parameter_count() == 17


def test_ridge_chooses_the_alpha_with_the_lowest_validation_error():
    rng = np.random.default_rng(1)
    x, y = _data(60, rng)
    x_val, y_val = _data(30, rng)
    alphas = [1e-6, 1e-2, 1.0, 100.0]
    ridge = RidgeBaseline(size=4, alphas=alphas).fit(x, y, x_val, y_val)
    errors = [np.mean((RidgeBaseline(4, [a]).fit(x, y).predict(x_val) - y_val) ** 2) for a in alphas]
    np.testing.assert_allclose(ridge.validation_mse_, errors, rtol=1e-4)
    assert ridge.alpha_ == alphas[int(np.argmin(errors))]


def test_ridge_leave_one_out_matches_refitting_without_each_sample():
    rng = np.random.default_rng(2)
    x, y = _data(15, rng, shape=(2, 2, 1))
    ridge = RidgeBaseline(size=2, alphas=[0.3]).fit(x, y)
    # Refit without each sample with the penalty the full fit used (it scales with the full data).
    centred = x.reshape(15, -1) - x.reshape(15, -1).mean(axis=0)
    penalty = 0.3 * (centred**2).sum() / 4
    errors = []
    for i in range(15):
        keep = np.arange(15) != i
        features = x.reshape(15, -1)[keep]
        mean = features.mean(axis=0)
        coef = np.linalg.solve(
            (features - mean).T @ (features - mean) + penalty * np.eye(4), (features - mean).T @ (y[keep] - y[keep].mean())
        )
        errors.append((x[i].reshape(-1) - mean) @ coef + y[keep].mean() - y[i])
    assert ridge.validation_mse_[0] == pytest.approx(np.mean(np.square(errors)), rel=1e-8)


def test_pixel_features_average_blocks():
    x = np.arange(2 * 4 * 6 * 1, dtype=np.float64).reshape(2, 4, 6, 1)
    features = pixel_features(x, 2)
    assert features.shape == (2, 4)
    np.testing.assert_allclose(features[0], [x[0, :2, :3].mean(), x[0, :2, 3:].mean(), x[0, 2:, :3].mean(), x[0, 2:, 3:].mean()])
    # Uneven sides: 5 pixels in 2 blocks of 2 and 3 (or 3 and 2); sizes above the image keep it whole.
    uneven = pixel_features(np.ones((1, 5, 5, 3)), 2)
    assert uneven.shape == (1, 12) and np.allclose(uneven, 1.0)
    assert pixel_features(x, 50).shape == (2, 24)


def test_ridge_rejects_bad_parameters_and_shapes():
    x, y = _data(10, np.random.default_rng(3))
    with pytest.raises(Img2NumError, match="alphas must be positive"):
        RidgeBaseline(alphas=[0.0]).fit(x, y)
    with pytest.raises(Img2NumError, match="size must be at least 1"):
        RidgeBaseline(size=0).fit(x, y)
    with pytest.raises(Img2NumError, match="9 labels for 10 images"):
        RidgeBaseline().fit(x, y[:9])
    ridge = RidgeBaseline().fit(x, y)
    with pytest.raises(Img2NumError, match="fitted on"):
        ridge.predict(np.zeros((2, 5, 5, 1)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 30), side=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_ridge_under_a_huge_penalty_predicts_the_mean_and_refits_identically(n, side, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, side, side, 3)).astype(np.uint8)
    y = rng.normal(size=n) * 10
    # A huge penalty leaves only the intercept: the training mean.
    flat = RidgeBaseline(size=4, alphas=[1e12]).fit(x, y).predict(x)
    np.testing.assert_allclose(flat, y.mean(), rtol=1e-4, atol=1e-3)
    ridge = RidgeBaseline(size=4).fit(x, y)
    prediction = ridge.predict(x)
    assert prediction.shape == (n,) and prediction.dtype == np.float32 and np.all(np.isfinite(prediction))
    assert ridge.alpha_ in ridge.alphas and len(ridge.validation_mse_) == len(ridge.alphas)
    assert np.array_equal(RidgeBaseline(size=4).fit(x, y).predict(x), prediction)
