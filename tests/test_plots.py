"""Pictures: grid titles, files written, loss curves."""

import numpy as np
from PIL import Image

from img2num import plots


def test_grid_titles_show_real_and_rounded_predicted_values():
    x = np.zeros((30, 4, 4, 1), np.uint8)
    y = np.arange(30, dtype=np.float32)
    fig = plots.sample_grid_figure(x, y, predictions=y + 0.26)
    titles = plots.grid_titles(fig)
    assert len(titles) == 25
    assert titles[0] == "R 0 P 0.3"
    assert titles[24] == "R 24 P 24.3"


def test_grid_of_few_images_and_fractional_labels():
    x = np.ones((3, 4, 4, 3), np.uint8) * 200
    fig = plots.sample_grid_figure(x, np.array([1.25, 2.0, 3.5]))
    assert plots.grid_titles(fig) == ["R 1.2", "R 2", "R 3.5"]


def test_pictures_are_large_pngs_and_nothing_else_is_written(tmp_path):
    x = np.zeros((25, 16, 16, 1), np.uint8)
    history = [{"epoch": e, "loss": 100.0 / e, "val_loss": 120.0 / e, "seconds": 0.1} for e in range(1, 6)]
    written = [
        plots.sample_grid(x, np.zeros(25), tmp_path / "grid.png", title="samples"),
        plots.loss_curves(history, tmp_path / "loss.png", "mlp"),
        plots.compare_loss_curves({"mlp": history, "cnn": history}, tmp_path / "both.png"),
    ]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 300 and image.height > 300
    with Image.open(tmp_path / "both.png") as both, Image.open(tmp_path / "loss.png") as one:
        assert both.width > 1.5 * one.width
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.png", "grid.png", "loss.png"]


def test_loss_curves_draw_the_best_possible_line():
    history = [{"epoch": e, "loss": 100.0 / e, "val_loss": 120.0 / e, "seconds": 0.1} for e in range(1, 4)]
    fig = plots.compare_loss_curves_figure({"mlp": history, "cnn": history}, reference_mse=47.7)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1]
        assert [line.get_ydata()[0] for line in flat] == [47.7]
        assert "best possible (47.7)" in [text.get_text() for text in ax.get_legend().get_texts()]
    without = plots.compare_loss_curves_figure({"mlp": history})
    assert len(without.axes[0].get_lines()) == 2
    seeds = plots.compare_loss_curves_figure({"mlp": history}, other_seeds={"mlp": [history[:2], history]})
    lines = seeds.axes[0].get_lines()
    assert len(lines) == 4 and [len(line.get_xdata()) for line in lines[:2]] == [2, 3]
    assert [text.get_text() for text in seeds.axes[0].get_legend().get_texts()][0] == "validation, other seeds"


def test_error_by_range_and_worst_indices():
    y_true = np.array([0.0, 1.0, 2.0, 9.0, 10.0])
    y_pred = np.array([1.0, 1.0, 2.0, 6.0, 10.0])
    edges, rmse, counts = plots.error_by_range(y_true, y_pred, bins=2)
    np.testing.assert_allclose(edges, [0.0, 5.0, 10.0])
    assert counts.tolist() == [3, 2]
    np.testing.assert_allclose(rmse, [np.sqrt(1 / 3), np.sqrt(9 / 2)])
    _, rmse, counts = plots.error_by_range(y_true, y_pred, edges=np.array([0.0, 3.0, 6.0, 11.0]))
    assert counts.tolist() == [3, 0, 2] and np.isnan(rmse[1])
    assert plots.worst_indices(y_true, y_pred, count=3).tolist() == [3, 0, 1]


def test_diagnostics_have_three_panels_and_the_bayes_curve():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 50, 200)
    fig = plots.diagnostics_figure(y, y + rng.normal(0, 2, 200), "mlp", reference_pred=y + 1.0)
    scatter, residuals, ranges = fig.axes
    assert scatter.get_title() == "predicted against true" and residuals.get_title() == "residuals"
    best = ranges.get_lines()[0].get_ydata()
    np.testing.assert_allclose(best, 1.0)
    assert len(ranges.patches) == 10


def test_grid_draws_every_image_in_its_colour(tmp_path):
    x = np.zeros((25, 8, 8, 3), np.uint8)
    x[..., 0] = 255  # pure red images on the white page
    x[24] = 0  # the last one black
    plots.sample_grid(x, None, tmp_path / "grid.png", title="red")
    with Image.open(tmp_path / "grid.png") as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    red = np.all(pixels == (255, 0, 0), axis=1).sum()
    black = np.all(pixels == (0, 0, 0), axis=1).sum()
    # Each image fills most of a cell of about 155 x 150 pixels, none covers another.
    assert 24 * 100**2 < red < 24 * 155**2
    assert 0.9 * red / 24 < black < 1.1 * red / 24 + 2000
