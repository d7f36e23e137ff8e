"""Pictures: grid titles, files written, loss curves."""

import numpy as np
from PIL import Image

from img2num import plots


def test_grid_titles_real_and_predicted():
    x = np.zeros((30, 4, 4, 1), np.uint8)
    y = np.arange(30, dtype=np.float32)
    fig = plots.sample_grid_figure(x, y, predictions=y + 0.26)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 25
    assert titles[0] == "R 0 P 0.3"
    assert titles[24] == "R 24 P 24.3"


def test_grid_of_few_images_and_fractional_labels():
    x = np.ones((3, 4, 4, 3), np.uint8) * 200
    fig = plots.sample_grid_figure(x, np.array([1.25, 2.0, 3.5]))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["R 1.2", "R 2", "R 3.5"]
    assert titles[3:] == [""] * 22


def test_files_are_png(tmp_path):
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
