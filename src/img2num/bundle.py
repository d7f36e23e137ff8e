"""The run bundle: a trained model with everything needed to predict as it did in training.

A run folder holds `model.keras`, `config.json` (the resolved configuration, preprocessing and
versions), `history.csv`, `metrics.json` and the run's pictures. It is written under a temporary
name and renamed into place when complete, so a folder with these files is a finished run.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2num import layout
from img2num.backbones import is_backbone
from img2num.config import PREDICT_BATCH_SIZE
from img2num.data import shape_text
from img2num.data.images import STORED_RESIZE_MODES
from img2num.errors import Img2NumError
from img2num.intervals import load_calibration, save_calibration
from img2num.io import atomic_folder, records_csv, write_json, write_text

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
# `Run.predict_splits` predicts the splits in memory together up to this much model input.
ONE_PASS_MB = 512


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input, and what input the model expects.

    Attributes:
        input_shape: (height, width, channels) the model takes.
        pixel_scale: Factor applied to pixel values: 1/255 for 8-bit images, 1/65535 for
            16-bit images, 1 for binary or floating-point images.
        band_offset: Per-band value subtracted before `band_scale` (the training mean of each
            band of multi-band images), or None to use `pixel_scale`.
        band_scale: Per-band factor (1 / the training standard deviation), or None.
        input_dtype: Pixel type images are brought to before scaling ("uint8", "uint16",
            "float32"), or None when unknown (runs from before image files).
        resize: How image files reach the input size: "none" (they must have it), "scale"
            (keeping the aspect ratio), "stretch", or "crop" (centre crop, then resize).
        input_kind: "arrays" when trained on `.npz` arrays, "images" for image files.
    """

    input_shape: tuple[int, int, int]
    pixel_scale: float = 1.0
    band_offset: tuple[float, ...] | None = None
    band_scale: tuple[float, ...] | None = None
    input_dtype: str | None = None
    resize: str = "none"
    input_kind: str = "arrays"

    @classmethod
    def for_images(cls, x: np.ndarray) -> Preprocessing:
        """The preprocessing that training arrays `x` (N, H, W, C) call for."""
        scale = 1.0
        if x.dtype == np.uint8 and x.max() > 1:
            scale = 1.0 / 255.0
        elif x.dtype == np.uint16 and x.max() > 1:
            scale = 1.0 / 65535.0
        return cls(tuple(int(d) for d in x.shape[1:]), scale, input_dtype=str(x.dtype))

    @classmethod
    def for_data(cls, data) -> Preprocessing:
        """The preprocessing that training data calls for: a `Dataset` of arrays (as
        `for_images`), or images read from files (a `Dataset` with paths, or `ImageFiles`).

        Image files are scaled by their pixel type (1/255 for 8-bit, 1/65535 for 16-bit, 1 for
        floating point); multi-band images (more than 3 bands) band by band to zero mean and
        unit variance over the training images.
        """
        spec = data.spec
        if spec is None:
            return cls.for_images(data.x)
        scale = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0}.get(spec.dtype, 1.0)
        offset = band_scale = None
        if spec.channels > 3:
            offset, band_scale = _band_scaling(data)
        return cls(spec.shape, scale, offset, band_scale, spec.dtype, spec.resize, "images")

    def image_spec(self):
        """The `ImageSpec` image files are decoded to for this model."""
        from img2num.data.images import ImageSpec

        height, width, channels = self.input_shape
        return ImageSpec((height, width), channels, self.input_dtype or "uint8", self.resize)

    def apply(self, x: np.ndarray, source: str = "images") -> np.ndarray:
        """Check the shape of images (N, H, W, C) and scale them to float32 model input.

        Raises:
            Img2NumError: The images do not have the shape the model was trained on.
        """
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise Img2NumError(
                f"{source}: images are {shape_text(x.shape[1:])} (HxWxC); "
                f"this model takes {shape_text(self.input_shape)}"
            )
        if self.band_offset is not None:
            offset = np.asarray(self.band_offset, np.float32)
            return (x.astype(np.float32) - offset) * np.asarray(self.band_scale, np.float32)
        return x.astype(np.float32) * np.float32(self.pixel_scale)

    def to_dict(self) -> dict:
        value = {"input_shape": list(self.input_shape), "pixel_scale": self.pixel_scale}
        if self.band_offset is not None:
            value.update(band_offset=list(self.band_offset), band_scale=list(self.band_scale))
        value.update(input_dtype=self.input_dtype, resize=self.resize, input_kind=self.input_kind)
        return value

    @classmethod
    def from_dict(cls, value: dict) -> Preprocessing:
        """Read `to_dict`'s output; keys added since the first release are optional."""
        offset, scale = value.get("band_offset"), value.get("band_scale")
        _check_choice("input_dtype", value.get("input_dtype"), _numeric_dtype, "a pixel type such as uint8, uint16 or float32")
        _check_choice("resize", value.get("resize", "none"), STORED_RESIZE_MODES.__contains__, ", ".join(STORED_RESIZE_MODES))
        _check_choice("input_kind", value.get("input_kind", "arrays"), ("arrays", "images").__contains__, "arrays or images")
        return cls(
            tuple(int(d) for d in value["input_shape"]),
            float(value["pixel_scale"]),
            None if offset is None else tuple(float(v) for v in offset),
            None if scale is None else tuple(float(v) for v in scale),
            value.get("input_dtype"),
            value.get("resize", "none"),
            value.get("input_kind", "arrays"),
        )


def _check_choice(key: str, value, valid, expected: str) -> None:
    if value is not None and not (isinstance(value, str) and valid(value)):
        raise ValueError(f"unknown {key} {value!r}; expected {expected}")


def _numeric_dtype(name: str) -> bool:
    try:
        return np.dtype(name).kind in "uif"
    except TypeError:
        return False


def _band_scaling(data) -> tuple[tuple[float, ...], tuple[float, ...]]:
    sums = getattr(data, "band_sums", None)
    if sums is not None:
        pixels = len(data) * data.image_shape[0] * data.image_shape[1]
        mean = sums[:, 0].sum(axis=0) / pixels
        var = np.maximum(sums[:, 1].sum(axis=0) / pixels - mean**2, 0.0)
    else:
        flat = data.x.reshape(-1, data.x.shape[-1]).astype(np.float64)
        mean, var = flat.mean(axis=0), flat.var(axis=0)
    std = np.sqrt(var)
    # A constant band carries no information; scale 1 keeps it at 0 instead of dividing by 0.
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in scale)


@dataclass(frozen=True)
class TargetScaling:
    """How targets were standardized for training, and how predictions are restored.

    The model learns (y - mean) / std; its outputs are multiplied by `std` and shifted by
    `mean`. The identity (mean 0, std 1) stands for raw targets.

    Attributes:
        mean: Mean of the training targets.
        std: Standard deviation of the training targets (1 when they are all equal).
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def for_targets(cls, y: np.ndarray) -> TargetScaling:
        """The standardization of training targets `y`."""
        y = np.asarray(y, dtype=np.float64)
        std = float(y.std())
        return cls(float(y.mean()), std if std > 0 else 1.0)

    def scale(self, y: np.ndarray) -> np.ndarray:
        """Targets in model units, float32."""
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def restore(self, output: np.ndarray) -> np.ndarray:
        """Model outputs in the targets' original units, float32."""
        return (np.asarray(output, dtype=np.float64) * self.std + self.mean).astype(np.float32)

    @property
    def loss_factor(self) -> float:
        """Factor turning a squared error in model units into one in original units."""
        return self.std**2

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, value: dict) -> TargetScaling:
        scaling = cls(float(value["mean"]), float(value["std"]))
        if not (np.isfinite(scaling.mean) and np.isfinite(scaling.std) and scaling.std > 0):
            raise ValueError(f"mean and std must be finite with std > 0, got {value}")
        return scaling


def predict_inputs(model, inputs: np.ndarray) -> np.ndarray:
    """The model's output (N, 1) on preprocessed `inputs`, by the fastest path for the backend:
    a compiled call per batch shape on JAX (`loop.predict`), the channels-first twin of a
    convolutional model on PyTorch (`layout`), else Keras' `predict`; batches of
    `PREDICT_BATCH_SIZE`."""
    import keras

    if keras.backend.backend() == "jax":
        from img2num.loop import predict

        return predict(model, inputs, PREDICT_BATCH_SIZE)
    if keras.backend.backend() == "torch" and layout.convertible(model):
        return layout.predict_channels_first(model, inputs, PREDICT_BATCH_SIZE)
    return model.predict(inputs, batch_size=PREDICT_BATCH_SIZE, verbose=0)


@dataclass
class Run:
    """A trained model, its preprocessing and its records.

    Attributes:
        model: The trained `keras.Model`.
        preprocessing: How images become model input.
        config: The resolved configuration: training settings, data, versions.
        history: Per-epoch records: `epoch`, `loss`, `val_loss`, `seconds`.
        metrics: Metrics per split name (`train`, `val`, `test`, ...).
        path: The run folder, once saved or when loaded.
        target_scaling: How the model's outputs become predictions in the targets' units.
        calibration: What turns predictions into intervals (`img2num.intervals`), or None for
            runs saved before intervals existed.
    """

    model: object
    preprocessing: Preprocessing
    config: dict
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    path: Path | None = None
    target_scaling: TargetScaling = field(default_factory=TargetScaling)
    calibration: object = None

    @property
    def model_name(self) -> str:
        return self.config["train"]["model"]

    def predict(self, x: np.ndarray, source: str = "images", interval: float | None = None):
        """Predict one number per image.

        Args:
            x: Images (N, H, W, C), or (N, H, W) for one channel, as stored in the data files.
            source: Name of the images, for error messages.
            interval: A level in (0, 1) such as 0.9 to get prediction intervals too.

        Returns:
            float32 predictions, shape (N,); with `interval`, an `Interval` (prediction, lower,
            upper) instead.

        Raises:
            Img2NumError: The images do not have the shape the model was trained on, or the
                level is bad or the run has no calibration.
        """
        output = predict_inputs(self.model, self.preprocessing.apply(x, source))
        predictions = self.target_scaling.restore(output).reshape(-1)
        return predictions if interval is None else self.interval(predictions, interval)

    def predict_data(self, data, interval: float | None = None):
        """Predict on a `Dataset`, or on `ImageFiles` decoded chunk by chunk (bounded memory);
        `interval` as in `predict`."""
        if hasattr(data, "x"):
            predictions = self.predict(data.x, data.source)
        else:
            parts = [self.predict(chunk, data.source) for chunk in data.chunks()]
            predictions = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return predictions if interval is None else self.interval(predictions, interval)

    def predict_splits(self, splits: dict) -> dict:
        """Predictions for each split of `splits` (name -> `Dataset` or `ImageFiles`), the same
        as `predict_data` on each to float32 rounding (batches of other sizes may sum in another
        order); the splits in memory go through the model in one batched
        pass (up to `ONE_PASS_MB` of model input), so that a first run compiles one prediction
        shape on JAX instead of one per split (docs/speed.md)."""
        predictions, together, size = {}, [], 0
        for name, split in splits.items():
            size += len(split) * int(np.prod(self.preprocessing.input_shape)) * 4 if hasattr(split, "x") else 0
            if hasattr(split, "x") and size <= ONE_PASS_MB * 2**20:
                together.append(name)
            else:
                predictions[name] = self.predict_data(split)
        if together:
            inputs = [self.preprocessing.apply(splits[name].x, splits[name].source) for name in together]
            output = self.target_scaling.restore(predict_inputs(self.model, np.concatenate(inputs))).reshape(-1)
            ends = np.cumsum([len(part) for part in inputs])[:-1]
            predictions.update(zip(together, np.split(output, ends)))
        return {name: predictions[name] for name in splits}

    def interval(self, predictions: np.ndarray, level: float):
        """Intervals at `level` around this run's `predictions` (an `intervals.Interval`).

        Raises:
            Img2NumError: The level is not in (0, 1) or the run has no calibration.
        """
        from img2num import intervals

        intervals.check_level(level)
        return intervals.require(self.calibration, self.path).interval(predictions, level)

    def save(
        self, folder: str | Path, overwrite: bool = False, extra: Callable[[Path], None] | None = None
    ) -> Path:
        """Save the bundle as a run folder, atomically.

        Args:
            folder: The run folder to create.
            overwrite: Replace an existing folder (only once the new one is complete).
            extra: Called with the still unfinished folder to add files of its own (pictures).

        Returns:
            The run folder.

        Raises:
            Img2NumError: The folder exists and `overwrite` is false.
        """
        with atomic_folder(folder, overwrite) as tmp:
            self.model.save(tmp / MODEL_FILE)
            write_json(
                tmp / CONFIG_FILE,
                {
                    **self.config,
                    "preprocessing": self.preprocessing.to_dict(),
                    "target_scaling": self.target_scaling.to_dict(),
                },
            )
            write_json(tmp / METRICS_FILE, self.metrics)
            write_text(tmp / HISTORY_FILE, records_csv(self.history))
            save_calibration(tmp, self.calibration)
            if extra is not None:
                extra(tmp)
        self.path = Path(folder)
        return self.path


def load_run(folder: str | Path) -> Run:
    """Load a finished run folder.

    Args:
        folder: A folder written by `img2num train` (or one model's folder in a recipe).

    Returns:
        The run, ready to predict.

    Raises:
        Img2NumError: The folder is missing, is not a finished run, or its files are corrupt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Img2NumError(f"{folder}: no such run folder")
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise Img2NumError(f"{folder}: not a finished img2num run (no {' or '.join(missing)})")
    config = _read_json(folder / CONFIG_FILE)
    try:
        preprocessing = Preprocessing.from_dict(config.pop("preprocessing"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Img2NumError(f"{folder / CONFIG_FILE}: corrupt run configuration (preprocessing: {error})") from None
    try:
        # Runs saved before targets were standardized have no scaling: their model predicts raw.
        target_scaling = TargetScaling.from_dict(config.pop("target_scaling", TargetScaling().to_dict()))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Img2NumError(f"{folder / CONFIG_FILE}: corrupt run configuration (target_scaling: {error})") from None
    metrics = _read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).exists() else {}
    history = _read_history(folder / HISTORY_FILE)
    from img2num.backends import enable_compilation_cache, import_keras, use_numpy_uniform
    from img2num.jax_ops import use_fast_depthwise

    enable_compilation_cache()
    keras = import_keras()

    import img2num.layers  # noqa: F401  (registers the layers a saved model may hold)

    use_numpy_uniform()  # building the loaded model draws its initial weights, then replaces them
    use_fast_depthwise()

    if is_backbone(config.get("train", {}).get("model", "")):
        import keras_hub  # noqa: F401  (registers the backbone's layers; loads nothing from a hub)

    if not zipfile.is_zipfile(folder / MODEL_FILE):  # Keras calls a damaged archive "File not found"
        raise Img2NumError(f"{folder / MODEL_FILE}: corrupt model file (not a complete .keras zip archive)")
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive.
        raise Img2NumError(f"{folder / MODEL_FILE}: cannot load the model ({error})") from None
    calibration = load_calibration(folder)
    return Run(model, preprocessing, config, history, metrics, folder, target_scaling=target_scaling, calibration=calibration)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Img2NumError(f"{path}: corrupt run file ({error})") from None


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [{key: (int(v) if key == "epoch" else float(v)) for key, v in row.items()} for row in rows]
    except (OSError, ValueError, TypeError) as error:
        raise Img2NumError(f"{path}: corrupt run file ({error})") from None


def as_run(run: Run | str | Path) -> Run:
    """Accept a loaded run or the path of a run folder."""
    return run if isinstance(run, Run) else load_run(run)
