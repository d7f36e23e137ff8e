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


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_points_intervals_cover_as_computed_on_the_generator(level):
    from img2num.bayes import points_bayes_intervals

    intervals = points_bayes_intervals(level, 8, 8)
    assert level <= intervals.coverage < level + 0.05
    data = generate_points(40_000, np.random.default_rng(4), 8, 8)
    lower, upper = intervals.interval(data.x.reshape(len(data.y), -1).sum(axis=1))
    inside = (lower <= data.y) & (data.y <= upper)
    standard_error = np.sqrt(intervals.coverage * (1 - intervals.coverage) / len(inside))
    assert abs(inside.mean() - intervals.coverage) < 4 * standard_error
    assert abs((upper - lower).mean() - intervals.mean_width) < 4 * (upper - lower).std() / np.sqrt(len(inside))


def test_points_intervals_are_the_shortest_runs_with_the_mass():
    from img2num.bayes import _points_joint, points_bayes_intervals

    level = 0.9
    intervals = points_bayes_intervals(level, 3, 3)
    labels, joint = _points_joint(3, 3, 0, None)
    for k in range(1, 9):  # 8 points never light all 9 pixels
        posterior = joint[:, k] / joint[:, k].sum()
        widths = [b - a for a in range(len(labels)) for b in range(a, len(labels)) if posterior[a : b + 1].sum() >= level - 1e-12]
        assert intervals.upper[k] - intervals.lower[k] == min(widths)
        a, b = int(intervals.lower[k]), int(intervals.upper[k])
        assert posterior[a : b + 1].sum() >= level - 1e-12


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_dust_intervals_are_highest_density_with_exact_coverage_on_monte_carlo(level):
    from scipy.stats import beta

    from img2num.bayes import dust_bayes_intervals

    cells = 64
    intervals = dust_bayes_intervals(level, cells)
    dusty = np.arange(cells + 1)
    mass = beta.cdf(intervals.upper / 100, dusty + 1, cells - dusty + 1) - beta.cdf(intervals.lower / 100, dusty + 1, cells - dusty + 1)
    np.testing.assert_allclose(mass, level, atol=1e-9)
    # Highest density: equal density at both ends wherever neither end is 0 or 100.
    inner = (intervals.lower > 1e-6) & (intervals.upper < 100 - 1e-6)
    density = [beta.pdf(bound[inner] / 100, dusty[inner] + 1, cells - dusty[inner] + 1) for bound in (intervals.lower, intervals.upper)]
    np.testing.assert_allclose(density[0], density[1], rtol=1e-4)
    equal_tails = 100 * (beta.ppf((1 + level) / 2, dusty + 1, cells - dusty + 1) - beta.ppf((1 - level) / 2, dusty + 1, cells - dusty + 1))
    assert np.all(intervals.upper - intervals.lower <= equal_tails + 1e-9)
    rng = np.random.default_rng(5)
    rates = rng.random(40_000)
    lower, upper = intervals.interval(rng.binomial(cells, rates))
    inside = (lower <= 100 * rates) & (100 * rates <= upper)
    assert abs(inside.mean() - level) < 4 * np.sqrt(level * (1 - level) / len(inside))


def test_bayes_intervals_refuse_bad_levels():
    from img2num.bayes import dust_bayes_intervals, points_bayes_intervals

    with pytest.raises(Img2NumError, match="interval level"):
        points_bayes_intervals(1.0, 4, 4)
    with pytest.raises(Img2NumError, match="interval level"):
        dust_bayes_intervals(0, 16)
