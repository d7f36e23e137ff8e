"""Frozen configuration dataclasses, one per concern; every default lives here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from img2num.errors import Img2NumError


@dataclass(frozen=True)
class PointsConfig:
    """The tutorial's synthetic points data set.

    Attributes:
        height: Image height in pixels.
        width: Image width in pixels.
        channels: Number of channels; every channel holds the same points.
        train: Number of training samples.
        val: Number of validation samples.
        test: Number of test samples.
        seed: Seed of the `numpy.random.Generator` the samples are drawn from.
    """

    height: int = 16
    width: int = 16
    channels: int = 1
    train: int = 1500
    val: int = 300
    test: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("height", "width", "channels"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("train", "val", "test"):
            _require(getattr(self, name) >= 0, f"{name} size must be non-negative, got {getattr(self, name)}")
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")

    @property
    def split_sizes(self) -> dict[str, int]:
        """Sample count of each split, in split order."""
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class DustConfig:
    """The dust task: RGB pictures of a solar panel on which dust settles at a hidden rate.

    Attributes:
        height: Image height in pixels.
        width: Image width in pixels.
        cell: Side of a dust cell in pixels; each cell is dusty or clean as a whole.
        noise: Standard deviation of the Gaussian pixel noise (pixel values run from 0 to 1); up
            to 0.02 every cell stays recognisable, so the Bayes reference is exact.
        train: Number of training samples.
        val: Number of validation samples.
        test: Number of test samples.
        seed: Seed of the `numpy.random.Generator` the samples are drawn from.
    """

    height: int = 64
    width: int = 64
    cell: int = 2
    noise: float = 0.02
    train: int = 1500
    val: int = 300
    test: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("height", "width", "cell"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        _require(0 <= self.noise <= 0.1, f"dust noise must be between 0 and 0.1, got {self.noise}")
        for name in ("train", "val", "test"):
            _require(getattr(self, name) >= 0, f"{name} size must be non-negative, got {getattr(self, name)}")
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")

    @property
    def split_sizes(self) -> dict[str, int]:
        """Sample count of each split, in split order."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def cells(self) -> int:
        """Number of dust cells in an image (edge cells may be cut by the border)."""
        return -(-self.height // self.cell) * -(-self.width // self.cell)


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained; the defaults are the tutorial's settings.

    Attributes:
        model: Registered model name (see `img2num models`).
        epochs: Number of passes over the training data.
        batch_size: Samples per gradient step.
        learning_rate: Adam's learning rate.
        seed: Seed for weight initialisation and batch shuffling.
        val_fraction: Share of the training data held out for validation when no validation
            set is given.
    """

    model: str = "mlp"
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        _require(
            self.learning_rate > 0 and self.learning_rate == self.learning_rate,
            f"learning rate must be a positive number, got {self.learning_rate}",
        )
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")
        _require(
            0.0 < self.val_fraction < 1.0,
            f"validation fraction must be between 0 and 1, got {self.val_fraction}",
        )

    def to_dict(self) -> dict:
        """The configuration as plain JSON-ready values."""
        return dataclasses.asdict(self)


# The tutorial trained for 1000 epochs; `img2num recipe` does the same unless told otherwise.
RECIPE_EPOCHS = 1000
RECIPE_MODELS = ("mlp", "cnn")
# Pictures: the tutorial's 5x5 grids.
GRID_ROWS = 5
GRID_COLS = 5
PREDICT_BATCH_SIZE = 256


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Img2NumError(message)
