"""The dust task: shapes, label statistics, the image-label relation, its Bayes reference, task.json."""

import json
from dataclasses import make_dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2num.bayes import dust_bayes_reference
from img2num.config import DustConfig, PointsConfig
from img2num.data import (
    TASK_NAMES,
    dusty_cells,
    generate_dust,
    generate_dust_splits,
    load_dataset,
    read_task,
    reference_predictions,
    task_info,
    write_dust,
    write_points,
)
from img2num.data.tasks import Task, register_task
from img2num.errors import Img2NumError


@pytest.fixture(scope="module")
def dust():
    return generate_dust(4000, np.random.default_rng(0), height=32, width=32, cell=2)


def test_rgb_images_and_labels_in_percent(dust):
    assert dust.x.shape == (4000, 32, 32, 3) and dust.x.dtype == np.uint8
    assert dust.y.dtype == np.float32
    assert dust.y.min() >= 0 and dust.y.max() <= 100
    # Uniform on 0..100: mean 50, standard deviation 100 / sqrt(12), each within 5 standard errors.
    assert abs(dust.y.mean() - 50) < 5 * (100 / np.sqrt(12)) / np.sqrt(4000)
    assert abs(dust.y.std() - 100 / np.sqrt(12)) < 1.0
    counts, _ = np.histogram(dust.y, bins=10, range=(0, 100))
    assert counts.min() > 300


def test_share_of_dusty_cells_follows_the_rate(dust):
    cells = 16 * 16
    share = dusty_cells(dust.x, 2) / cells
    rate = dust.y / 100
    # Binomial scatter: standardised differences have mean 0 and variance 1.
    z = (share - rate) / np.sqrt(np.maximum(rate * (1 - rate), 1e-3) / cells)
    assert abs(z.mean()) < 0.1 and 0.85 < z.var() < 1.15
    # Dust is brown (red above blue), clean panel is blue: the mean red-blue gap grows with the rate.
    gap = dust.x[..., 0].mean(axis=(1, 2)) - dust.x[..., 2].mean(axis=(1, 2))
    assert np.corrcoef(gap, rate)[0, 1] > 0.95


def test_every_pixel_of_a_cell_agrees_with_its_corner(dust):
    x = dust.x[:200].astype(int)
    dusty = x[..., 0] > x[..., 2]
    corners = dusty[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)
    assert np.array_equal(dusty, corners)


def test_bayes_reference_matches_monte_carlo(dust):
    reference = dust_bayes_reference(256)
    assert reference.mse == pytest.approx(1e4 / (6 * 258))
    squared = (reference.predict(dusty_cells(dust.x, 2)) - dust.y) ** 2
    assert abs(squared.mean() - reference.mse) < 4 * squared.std() / np.sqrt(len(squared))
    # The realised share of dusty cells is a worse guess than the posterior mean.
    share = 100 * dusty_cells(dust.x, 2) / 256
    assert np.mean((share - dust.y) ** 2) > squared.mean()


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 20),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    cell=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_generator_is_seeded_and_labels_are_percentages(n, height, width, cell, seed):
    data = generate_dust(n, np.random.default_rng(seed), height, width, cell)
    again = generate_dust(n, np.random.default_rng(seed), height, width, cell)
    assert data.x.shape == (n, height, width, 3)
    assert data.x.tobytes() == again.x.tobytes() and data.y.tobytes() == again.y.tobytes()
    assert np.all((data.y >= 0) & (data.y <= 100))
    cells = -(-height // cell) * -(-width // cell)
    assert np.all((dusty_cells(data.x, cell) >= 0) & (dusty_cells(data.x, cell) <= cells))


def test_splits_are_independent_and_config_is_checked():
    small = generate_dust_splits(DustConfig(height=8, width=8, train=5, val=2, test=6, seed=1))
    large = generate_dust_splits(DustConfig(height=8, width=8, train=50, val=2, test=6, seed=1))
    assert np.array_equal(small["test"].x, large["test"].x)
    assert DustConfig(height=5, width=7, cell=2).cells == 3 * 4
    with pytest.raises(Img2NumError, match="dust noise must be between 0 and 0.1"):
        DustConfig(noise=0.5)
    with pytest.raises(Img2NumError, match="cell must be at least 1"):
        DustConfig(cell=0)


def test_write_dust_and_points_record_the_task(tmp_path):
    config = DustConfig(height=8, width=6, cell=2, train=20, val=0, test=10, seed=2)
    paths = write_dust(tmp_path / "dust", config)
    assert sorted(paths) == ["test", "train"]
    assert load_dataset(paths["train"]).x.shape == (20, 8, 6, 3)
    info = read_task(tmp_path / "dust")
    assert info["task"] == "dust" and info["options"]["cell"] == 2 and info["options"]["height"] == 8
    assert info["reference_mse"] == pytest.approx(1e4 / (6 * (12 + 2)))
    assert info["reference"].startswith("exact")
    test = load_dataset(paths["test"])
    expected = 100 * (dusty_cells(test.x, 2) + 1) / 14
    np.testing.assert_allclose(reference_predictions(info, test.x), expected)

    write_points(tmp_path / "points", PointsConfig(height=16, width=16, train=10, val=0, test=5))
    info = json.loads((tmp_path / "points" / "task.json").read_text())
    assert info["task"] == "points" and info["reference_mse"] == pytest.approx(47.686, abs=1e-3)
    assert read_task(tmp_path / "points") == info
    assert read_task(tmp_path / "points" / "train.npz") is None and read_task(tmp_path) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "task.json").write_text('{"task": 3}')
    with pytest.raises(Img2NumError, match="bad/task.json: expected a JSON object with 'task'"):
        read_task(tmp_path / "bad")


def test_each_task_registers_its_own_metadata_once():
    assert TASK_NAMES == ("points", "dust")
    assert task_info(DustConfig())["label"].startswith("dust rate in percent")
    assert reference_predictions({"task": "digits", "reference_mse": None}, np.zeros((1, 8, 8, 3))) is None
    with pytest.raises(TypeError, match="not a task configuration"):
        task_info(make_dataclass("Other", [("seed", int)])(0))
    with pytest.raises(ValueError, match="clashes with the registered task 'dust'"):
        register_task(Task("dust", "again", DustConfig, lambda config: (None, ""), lambda info, x: None))


def test_command_line_generates_the_dust_task(capsys, tmp_path):
    from img2num.cli import main

    sizes = ["--train-size", "12", "--val-size", "4", "--test-size", "6", "--data-seed", "5"]
    assert main(["generate", str(tmp_path / "d"), "--task", "dust", "--height", "10", "--cell", "3", *sizes]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{s}: {tmp_path / 'd' / s}.npz" for s in ("train", "val", "test")]
    train = load_dataset(tmp_path / "d" / "train.npz")
    assert train.x.shape == (12, 10, 64, 3)
    config = DustConfig(height=10, width=64, cell=3, train=12, val=4, test=6, seed=5)
    assert np.array_equal(train.x, generate_dust_splits(config)["train"].x)
    info = read_task(tmp_path / "d")
    assert info["options"] == {**config.__dict__} and info["reference_mse"] == pytest.approx(1e4 / (6 * (4 * 22 + 2)))
    assert main(["generate", str(tmp_path / "p"), "--noise", "0.01"]) == 1
    assert capsys.readouterr().err.strip() == "img2num: error: --cell and --noise belong to --task dust"
    assert main(["generate", str(tmp_path / "p"), "--task", "dust", "--channels", "1"]) == 1
    assert "the dust task is RGB (3 channels)" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
