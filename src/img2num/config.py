"""Frozen configuration dataclasses, one per concern; every default lives here."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from img2num.errors import Img2NumError


# The model name that chooses among the candidate models within a time limit (img2num.autoselect).
AUTO_MODEL = "auto"
# The model `img2num train` uses without --model: the automatic choice (docs/auto.md).
DEFAULT_MODEL = AUTO_MODEL
# Seconds `--model auto` takes when no --time-limit is given (docs/auto.md gives the measurement).
DEFAULT_TIME_LIMIT = 300.0
# Of a time limit, this share (at least TIME_RESERVE_MIN seconds, at most TIME_RESERVE_MAX) is
# kept for what follows training: predictions on every split, saving, pictures (docs/auto.md).
TIME_RESERVE_SHARE = 0.15
TIME_RESERVE_MIN = 5.0
TIME_RESERVE_MAX = 45.0
# The tutorial's training settings, as `img2num recipe` and `img2num train --plain` use them.
PLAIN_SETTINGS = {
    "epochs": 1000,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "patience": 0,
    "lr_patience": 0,
    "standardize_targets": False,
    "weight_decay": 0.0,
    "augment": False,
}
# A plateau of the validation loss halves the learning rate, down to this share of the initial one.
LR_REDUCTION_FACTOR = 0.5
MIN_LR_SHARE = 0.01


class _SyntheticSplits:
    """What every synthetic task's configuration shares: split sizes `train`, `val` and `test`,
    and the data `seed`."""

    def _check_splits(self) -> None:
        for name in ("train", "val", "test"):
            _require(getattr(self, name) >= 0, f"{name} size must be non-negative, got {getattr(self, name)}")
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")

    @property
    def split_sizes(self) -> dict[str, int]:
        """Sample count of each split, in split order."""
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class PointsConfig(_SyntheticSplits):
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
        self._check_splits()


@dataclass(frozen=True)
class DustConfig(_SyntheticSplits):
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
        self._check_splits()

    @property
    def cells(self) -> int:
        """Number of dust cells in an image (edge cells may be cut by the border)."""
        return -(-self.height // self.cell) * -(-self.width // self.cell)


# Ways to run the epochs (`TrainConfig.trainer`).
TRAINERS = ("auto", "scan", "step", "fit", "fit_channels_first")
# Keras backends (`TrainConfig.backend`; see img2num.backends).
BACKENDS = ("auto", "jax", "torch", "tensorflow")


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained.

    The defaults generalize: the learning rate halves on a plateau of the validation loss,
    training stops when that loss has not improved for `patience` epochs, and the model learns
    standardized targets. `TrainConfig.plain()` gives the tutorial's plain
    settings instead (a fixed number of epochs with plain Adam on raw targets).

    Attributes:
        model: Registered model name (see `img2num models`), or "auto" (the default): try the
            candidate models on the training split and keep the one with the lowest validation
            loss, within `time_limit` (see `img2num.autoselect`).
        epochs: Most passes over the training data (exactly this many when `patience` is 0); with
            "auto", the most epochs of any one candidate.
        batch_size: Samples per gradient step.
        learning_rate: Initial learning rate of Adam (AdamW when `weight_decay` > 0).
        seed: Seed for weight initialisation, batch shuffling and augmentation.
        val_fraction: Share of the training data held out for validation when no validation
            set is given.
        patience: Early stopping: stop after this many epochs without a lower validation loss;
            0 trains every epoch.
        restore_best: Which weights training ends with, when `patience` is set: True restores
            the epoch with the lowest validation loss, False keeps the last epoch's. None (the
            default) keeps the last when early stopping ends training, since by then the
            learning rate has fallen several times and the weights have settled (the lowest
            loss on a small validation set is often a lucky epoch; see docs/accuracy.md's
            notes), and restores the best when the epoch limit ends it first.
        average_epochs: Keep the average of the last this many epochs' weights (stochastic
            weight averaging) instead of one epoch's; 0 keeps one epoch's, as `restore_best` says.
            benchmarks/kept_weights.py measures which generalizes (docs/auto.md).
        lr_patience: Halve the learning rate after this many epochs without a lower validation
            loss (down to 1/100 of the initial rate); 0 keeps it constant.
        standardize_targets: Train on targets standardized with the training split's mean and
            standard deviation; predictions are restored to the original units.
        weight_decay: Decoupled weight decay of AdamW; 0 uses plain Adam.
        augment: Random label-preserving flips (and 90-degree rotations of square images) of
            the training images; for tasks whose number does not depend on orientation.
        trainer: How epochs run: "auto" (img2num's compiled loop on the JAX backend with the
            data in memory; Keras' `fit` on a channels-first copy on PyTorch when the model
            converts; else Keras' `fit`), "scan" (whole epochs in one compiled call), "step"
            (one compiled call per batch), "fit" (Keras' own `model.fit`) or
            "fit_channels_first". All give the same numbers; only the speed differs (see
            `img2num.loop` and `img2num.layout`).
        backend: Keras backend: "auto" (KERAS_BACKEND when set, else the faster one for the
            model and image size, see `img2num.backends`), "jax", "torch" or "tensorflow".
        time_limit: Most seconds `train` takes, from its call to the saved run (checked between
            epochs; a share is kept for predictions, saving and pictures). None: `DEFAULT_TIME_LIMIT`
            with "auto", no limit for a named model.
        finetune_stages: How many of the backbone's last stages a `finetune:PRESET` model
            trains (with its head); 0 trains the whole network (docs/backbones.md).
        devices: Local devices a model trained by epochs uses, each batch split evenly among
            them (Keras' `DataParallel`, JAX backend; `batch_size` must divide by it); None
            takes every accelerator when there are several, else 1 (`img2num.parallel`).
    """

    model: str = DEFAULT_MODEL
    epochs: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    patience: int = 40
    restore_best: bool | None = None
    average_epochs: int = 0
    lr_patience: int = 10
    standardize_targets: bool = True
    weight_decay: float = 0.0
    augment: bool = False
    trainer: str = "auto"
    backend: str = "auto"
    time_limit: float | None = None
    finetune_stages: int = 2
    devices: int | None = None

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        _require(
            self.learning_rate > 0 and self.learning_rate < float("inf"),
            f"learning rate must be a positive number, got {self.learning_rate}",
        )
        _require(self.seed >= 0, f"seed must be non-negative, got {self.seed}")
        _require(
            0.0 < self.val_fraction < 1.0,
            f"validation fraction must be between 0 and 1, got {self.val_fraction}",
        )
        _require(self.patience >= 0, f"patience must be non-negative, got {self.patience}")
        _require(
            isinstance(self.average_epochs, int) and self.average_epochs >= 0,
            f"average epochs must be a whole number of at least 0, got {self.average_epochs}",
        )
        _require(self.lr_patience >= 0, f"learning-rate patience must be non-negative, got {self.lr_patience}")
        _require(
            0.0 <= self.weight_decay < float("inf"),
            f"weight decay must be a non-negative number, got {self.weight_decay}",
        )
        _require(self.backend in BACKENDS, f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        _require(self.trainer in TRAINERS, f"unknown trainer {self.trainer!r}; known: {', '.join(TRAINERS)}")
        _require(
            self.time_limit is None
            or (
                isinstance(self.time_limit, (int, float))
                and not isinstance(self.time_limit, bool)
                and 0 < self.time_limit < float("inf")
            ),
            f"time limit must be a positive number of seconds, got {self.time_limit}",
        )
        _require(
            isinstance(self.finetune_stages, int) and self.finetune_stages >= 0,
            f"finetune stages must be a whole number of at least 0, got {self.finetune_stages}",
        )
        _require(
            self.devices is None or (isinstance(self.devices, int) and self.devices >= 1),
            f"devices must be a whole number of at least 1, got {self.devices}",
        )

    @property
    def resolved_time_limit(self) -> float | None:
        """The time limit in seconds that applies: `time_limit`, else `DEFAULT_TIME_LIMIT` for
        "auto" and None (no limit) for a named model."""
        if self.time_limit is not None:
            return float(self.time_limit)
        return DEFAULT_TIME_LIMIT if self.model == AUTO_MODEL else None

    @classmethod
    def plain(cls, **overrides) -> TrainConfig:
        """The tutorial's plain settings: 1000 epochs of Adam at 1e-3, batch 32, raw targets,
        no early stopping, no learning-rate reduction, no weight decay, no augmentation.

        Args:
            **overrides: Fields to set otherwise (the model, the epochs, the seed, ...).
        """
        return cls(**{**PLAIN_SETTINGS, **overrides})

    @property
    def is_plain(self) -> bool:
        """Whether the training settings are the tutorial's plain ones (any model and epochs)."""
        return all(getattr(self, name) == value for name, value in PLAIN_SETTINGS.items() if name != "epochs")

    def to_dict(self) -> dict:
        """The configuration as plain JSON-ready values."""
        return dataclasses.asdict(self)


# Resize modes of `DataConfig.resize`: stretch to the size, or cut the largest centred box of
# the size's aspect ratio first. Without one, only resizing that keeps the aspect ratio is done.
RESIZE_MODES = ("stretch", "crop")
# Units of a gap between training and later splits on a date or date-time column, in seconds.
GAP_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_GAP = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)\s*([a-z]*)")


def parse_gap(gap: float | str) -> tuple[float, bool]:
    """A `DataConfig.gap` as (amount, whether a unit made it seconds): `6` is (6.0, False),
    `"15min"` is (900.0, True).

    Raises:
        Img2NumError: Not a non-negative number, or a number with an unknown unit.
    """
    if isinstance(gap, (int, float)) and not isinstance(gap, bool):
        _require(0 <= gap < float("inf"), f"gap must be a number of at least 0, got {gap!r}")
        return float(gap), False
    match = _GAP.fullmatch(str(gap).strip().lower())
    _require(
        match is not None and match.group(2) in ("", *GAP_UNITS),
        f"gap must be a number of at least 0, or a duration such as 30s, 15min, 6h or 2d; got {gap!r}",
    )
    amount, unit = float(match.group(1)), match.group(2)
    return (amount * GAP_UNITS[unit], True) if unit else (amount, False)
# Decoded pixels up to this many megabytes are cached in memory; larger data sets stream from disk.
CACHE_MB = 512


@dataclass(frozen=True)
class DataConfig:
    """How image files and label files become data; ignored for `.npz` arrays.

    Attributes:
        path_column: CSV column naming each image, relative to the CSV; None takes `file`,
            else `path`.
        label_column: CSV column holding each image's number; None takes `label`, else `value`.
        split_column: Optional CSV column (train/val/test) assigning each image to a split.
        channels: 1 (grayscale) or 3 (colour); None keeps what the data is: colour when any
            image is colour, else grayscale; multi-band TIFF keeps its bands.
        image_size: (height, width) every image is brought to; None requires one size.
        resize: How images of another aspect ratio reach `image_size`: "stretch" or "crop"
            (centre crop, then resize). None refuses to change an aspect ratio.
        test_fraction: Share held out for testing when the CSV has no split column (at random,
            or by `group_column` and `time_column`).
        group_column: Optional CSV column naming each image's group (a camera, a site, a source
            photo): whole groups go to training, validation or test (docs/groups.md).
        time_column: Optional CSV column of each image's time (ISO dates, ISO date-times or
            plain numbers): validation and test are the latest shares in time.
        gap: With `time_column`, training rows within this distance before the earliest
            validation time (and validation rows before the earliest test time) are dropped:
            a number in the column's units, or for dates and date-times seconds or a duration
            such as "30s", "15min", "6h", "2d".
        frame_column: CSV column of the frame's time on rows whose file is a video (seconds,
            MM:SS or HH:MM:SS.fff); None takes `time` (docs/video.md).
        skip_bad: Skip bad rows and files (counted, listed and reported) instead of failing.
        cache_mb: Decoded data sets up to this many megabytes are loaded into memory; larger
            ones stream from disk batch by batch. 0 always streams.
        workers: Processes that decode images; None uses every CPU core.
        raster: The GeoTIFF a label CSV of map points (`x,y,label`) names once, when it has no
            file column (docs/rasters.md).
        tile: Side in pixels of the square chip cut around each map point for training.
        bands: 1-based band numbers to keep, in order, such as (4, 3, 2), of GeoTIFF chips and
            multi-band TIFF files; None keeps every band.
    """

    path_column: str | None = None
    label_column: str | None = None
    split_column: str = "split"
    channels: int | None = None
    image_size: tuple[int, int] | None = None
    resize: str | None = None
    test_fraction: float = 0.0
    skip_bad: bool = False
    cache_mb: float = CACHE_MB
    workers: int | None = None
    group_column: str | None = None
    time_column: str | None = None
    gap: float | str | None = None
    frame_column: str | None = None
    raster: str | None = None
    tile: int | None = None
    bands: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _require(self.channels in (None, 1, 3), f"channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None:
            _require(
                len(self.image_size) == 2 and min(self.image_size) >= 1,
                f"image size must be two whole numbers of at least 1, got {self.image_size}",
            )
            object.__setattr__(self, "image_size", tuple(int(d) for d in self.image_size))
        _require(
            self.resize in (None, *RESIZE_MODES),
            f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}",
        )
        _require(
            self.resize is None or self.image_size is not None,
            "a resize mode needs an image size (--image-size HxW)",
        )
        _require(0.0 <= self.test_fraction < 1.0, f"test fraction must be in [0, 1), got {self.test_fraction}")
        _require(self.cache_mb >= 0, f"cache size must be non-negative, got {self.cache_mb}")
        _require(self.workers is None or self.workers >= 1, f"workers must be at least 1, got {self.workers}")
        for name in ("group_column", "time_column"):
            value = getattr(self, name)
            _require(value is None or (isinstance(value, str) and value.strip() != ""), f"{name.replace('_', ' ')} must be a column name, got {value!r}")
        if self.gap is not None:
            _require(self.time_column is not None, "a gap needs a time column (--time-column NAME)")
            parse_gap(self.gap)
        _require(self.tile is None or self.tile >= 1, f"tile must be at least 1 pixel, got {self.tile}")
        if self.bands is not None:
            bands = tuple(int(band) for band in self.bands)
            _require(bands and min(bands) >= 1, f"bands are numbered from 1, got {self.bands}")
            _require(len(set(bands)) == len(bands), f"bands must differ, got {self.bands}")
            object.__setattr__(self, "bands", bands)

    def to_dict(self) -> dict:
        """The configuration as plain JSON-ready values."""
        value = dataclasses.asdict(self)
        value["image_size"] = None if self.image_size is None else list(self.image_size)
        return value


# The tutorial trained for 1000 epochs; `img2num recipe` does the same unless told otherwise.
RECIPE_EPOCHS = PLAIN_SETTINGS["epochs"]
RECIPE_MODELS = ("mlp", "cnn")
# Pictures: the tutorial's 5x5 grids.
GRID_ROWS = 5
GRID_COLS = 5
PREDICT_BATCH_SIZE = 256

# `img2num serve` listens here unless told otherwise: reachable from this machine only.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens, what it accepts and how it batches.

    Attributes:
        host: Address to bind; 127.0.0.1 is reachable from this machine only.
        port: TCP port; 0 takes a free one (the start message names it).
        max_upload_mb: Largest request body in MB; a larger one is answered 413.
        max_pixels: Largest image (height x width) decoded; a larger one is a per-image error.
        max_images: Most images in one request; more are answered 400.
        max_batch: Most images in one model call.
        batch_wait_ms: How long the first image of a batch waits for others to join it.
        queue_size: Most images waiting for the model; a request that would pass it is
            answered 503, so a burst cannot fill the memory.
        max_connections: Most connections served at once (uvicorn's limit_concurrency); more
            are answered 503.
        units: What the predicted number is measured in, given in every answer (default: the
            run's own `units` entry, if any).
        allowed_hosts: Host names (the request's Host header, port aside) answered besides the
            loopback names, or ("*",) for any. By default a server on a loopback address answers
            only localhost, 127.x.x.x and [::1], so that a web page elsewhere cannot reach it by
            DNS rebinding; one on any other address answers every name.
        engine: What runs the model: "keras", or "onnx" for ONNX Runtime on the run's exported
            graph (`img2num.engines`).
    """

    host: str = LOOPBACK
    port: int = 8000
    max_upload_mb: float = 32.0
    max_pixels: int = 25_000_000
    max_images: int = 256
    max_batch: int = 64
    batch_wait_ms: float = 2.0
    queue_size: int = 1024
    max_connections: int = 64
    units: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    engine: str = "keras"

    def __post_init__(self) -> None:
        # Messages name the command-line options; each is the field's name with dashes.
        for name in ("max_upload_mb", "max_pixels", "max_images", "max_batch", "queue_size", "max_connections"):
            _require(getattr(self, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        _require(0 <= self.port <= 65535, f"--port must be 0 to 65535, got {self.port}")
        _require(self.batch_wait_ms >= 0, f"--batch-wait-ms must be at least 0, got {self.batch_wait_ms}")
        _require(
            self.max_images <= self.queue_size,
            f"--max-images ({self.max_images}) must not exceed --queue-size ({self.queue_size}): "
            "one request's images must fit in the queue",
        )
        if self.allowed_hosts is not None:
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
            _require(
                all(isinstance(name, str) and name.strip() for name in self.allowed_hosts),
                f"--allowed-hosts must be host names (or *), got {list(self.allowed_hosts)}",
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Img2NumError(message)
