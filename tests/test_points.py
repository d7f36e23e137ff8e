"""The points generator: shapes, types, label range, occupancy statistics, seeding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2num.config import PointsConfig
from img2num.data import generate_points, generate_points_splits, load_dataset, write_points
from img2num.errors import Img2NumError


def _lit(x):
    return x.reshape(len(x), -1).sum(axis=1)


def test_default_shape_dtype_and_values():
    data = generate_points(500, np.random.default_rng(0))
    assert data.x.shape == (500, 16, 16, 1)
    assert data.x.dtype == np.uint8
    assert data.y.shape == (500,)
    assert data.y.dtype == np.float32
    assert set(np.unique(data.x)) <= {0, 1}


def test_labels_cover_the_whole_range():
    data = generate_points(20_000, np.random.default_rng(1))
    assert data.y.min() == 0
    assert data.y.max() == 255
    assert len(np.unique(data.y)) == 256
    assert np.all(data.y == np.round(data.y))


def test_mean_lit_pixels_matches_occupancy_formula():
    """For n points in m pixels, E[lit] = m(1 - (1 - 1/m)^n); each n is checked to 5 standard errors."""
    m = 256
    data = generate_points(60_000, np.random.default_rng(2))
    lit = _lit(data.x).astype(np.float64)
    labels = data.y.astype(int)
    checked = 0
    for n in range(m):
        group = lit[labels == n]
        expected = m * (1 - (1 - 1 / m) ** n)
        variance = m * (m - 1) * (1 - 2 / m) ** n + m * (1 - 1 / m) ** n - m**2 * (1 - 1 / m) ** (2 * n)
        tolerance = 5 * np.sqrt(max(variance, 0.0) / len(group)) + 1e-9
        assert abs(group.mean() - expected) <= tolerance, (n, group.mean(), expected)
        checked += 1
    assert checked == m
    # Collisions only ever hide points.
    assert np.all(lit <= labels)
    assert np.all(lit[labels == 0] == 0)


def test_same_seed_same_bytes_other_seed_other_data():
    first = generate_points(300, np.random.default_rng(7))
    second = generate_points(300, np.random.default_rng(7))
    other = generate_points(300, np.random.default_rng(8))
    assert first.x.tobytes() == second.x.tobytes()
    assert first.y.tobytes() == second.y.tobytes()
    assert first.x.tobytes() != other.x.tobytes()


def test_each_split_is_independent_of_the_other_sizes():
    small = generate_points_splits(PointsConfig(train=10, val=5, test=20, seed=4))
    large = generate_points_splits(PointsConfig(train=500, val=50, test=20, seed=4))
    assert np.array_equal(small["test"].x, large["test"].x)
    assert np.array_equal(small["test"].y, large["test"].y)
    assert not np.array_equal(small["val"].x[:5], generate_points_splits(PointsConfig(seed=5))["val"].x[:5])


def test_channels_repeat_the_same_points():
    data = generate_points(50, np.random.default_rng(0), height=6, width=9, channels=3)
    assert data.x.shape == (50, 6, 9, 3)
    assert np.array_equal(data.x[..., 0], data.x[..., 2])
    assert data.y.max() < 54


def test_zero_samples_is_an_error():
    with pytest.raises(Img2NumError, match="at least 1"):
        generate_points(0, np.random.default_rng(0))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_generator_is_seeded_and_labels_bound_the_lit_pixels(n, height, width, seed):
    data = generate_points(n, np.random.default_rng(seed), height=height, width=width)
    again = generate_points(n, np.random.default_rng(seed), height=height, width=width)
    assert data.x.shape == (n, height, width, 1)
    assert data.x.tobytes() == again.x.tobytes()
    assert np.all((data.y >= 0) & (data.y < height * width))
    assert np.all(_lit(data.x) <= data.y)


def test_write_points_files_and_refuses_to_overwrite(tmp_path):
    config = PointsConfig(height=4, width=5, train=12, val=0, test=3, seed=9)
    paths = write_points(tmp_path / "d", config)
    assert sorted(paths) == ["test", "train"]
    assert not (tmp_path / "d" / "val.npz").exists()
    train = load_dataset(paths["train"], require_labels=True)
    assert train.x.shape == (12, 4, 5, 1) and train.x.dtype == np.uint8
    assert np.array_equal(train.x, generate_points_splits(config)["train"].x)
    before = paths["train"].read_bytes()
    with pytest.raises(Img2NumError, match="already exists; pass --overwrite"):
        write_points(tmp_path / "d", PointsConfig(train=5, val=0, test=0, seed=1))
    assert paths["train"].read_bytes() == before
    write_points(tmp_path / "d", PointsConfig(height=4, width=5, train=5, val=0, test=0), overwrite=True)
    assert len(load_dataset(paths["train"])) == 5
