import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2num.bayes import occupancy_distribution, points_bayes_reference
from img2num.data.points import generate_points
from img2num.errors import Img2NumError


def test_tutorial_size_reference_is_about_47_7():
    assert points_bayes_reference(16, 16).mse == pytest.approx(47.686, abs=1e-3)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30))
def test_occupancy_rows_are_distributions_with_the_known_mean(max_points, pixels):
    table = occupancy_distribution(max_points, pixels)
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    expected_lit = pixels * (1 - (1 - 1 / pixels) ** np.arange(max_points + 1))
    np.testing.assert_allclose(table @ np.arange(pixels + 1), expected_lit)


def test_reference_matches_monte_carlo_on_the_generator():
    reference = points_bayes_reference(8, 8)
    data = generate_points(100_000, np.random.default_rng(3), 8, 8)
    lit = data.x.reshape(len(data.y), -1).sum(axis=1)
    squared = (reference.predict(lit) - data.y) ** 2
    standard_error = squared.std() / np.sqrt(len(squared))
    assert abs(squared.mean() - reference.mse) < 4 * standard_error


def test_no_other_rule_on_lit_count_beats_the_posterior_mean():
    reference = points_bayes_reference(4, 4)
    data = generate_points(50_000, np.random.default_rng(4), 4, 4)
    lit = data.x.reshape(len(data.y), -1).sum(axis=1)
    best = np.mean((reference.predict(lit) - data.y) ** 2)
    shifted = np.mean((reference.predict(lit) + 0.5 - data.y) ** 2)
    assert best < shifted


def test_label_range_and_size_are_checked():
    assert points_bayes_reference(2, 2, 0, 0).mse == 0.0
    with pytest.raises(Img2NumError, match="label range"):
        points_bayes_reference(16, 16, 10, 5)
    with pytest.raises(Img2NumError, match="image size"):
        points_bayes_reference(0, 16)
