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

from img2num.backends import start_keras
from img2num.data import shape_text
from img2num.errors import Img2NumError
from img2num.inference import predict_inputs
from img2num.intervals import load_calibration, save_calibration
from img2num.io import FolderKind, atomic_folder, records_csv, write_json, write_text
from img2num.preprocessing import Preprocessing, TargetScaling
from img2num.registry import is_backbone

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
# What `--overwrite` may replace with a run: a run folder (older ones without the marker by their files).
RUN_FOLDER = FolderKind("run", "run folder", (CONFIG_FILE, MODEL_FILE))
# `Run.predict_splits` predicts the splits in memory together up to this much model input.
ONE_PASS_MB = 512


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
            Img2NumError: The folder exists and `overwrite` is false, or it is not a run folder
                (`img2num.io.check_replaceable`).
        """
        with atomic_folder(folder, overwrite, RUN_FOLDER) as tmp:
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


def load_run(folder: str | Path, with_model: bool = True) -> Run:
    """Load a finished run folder.

    Args:
        folder: A folder written by `img2num train` (or one model's folder in a recipe).
        with_model: Load the Keras model too; without it (`model` None) no Keras starts, for
            an engine that runs an exported graph instead (`img2num.engines`).

    Returns:
        The run, ready to predict (with its model).

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
    if not with_model:
        return Run(None, preprocessing, config, history, metrics, folder, target_scaling, load_calibration(folder))
    # Building the loaded model draws its initial weights (with NumPy on JAX), then replaces them.
    keras = start_keras()

    import img2num.layers  # noqa: F401  (registers the layers a saved model may hold)

    models = [config.get("train", {}).get("model", ""), *config.get("ensemble", {}).get("members", [])]
    if any(is_backbone(str(name)) for name in models):
        import keras_hub  # noqa: F401  (registers the backbone's layers; loads nothing from a hub)

    if not zipfile.is_zipfile(folder / MODEL_FILE):  # Keras calls a damaged archive "File not found"
        raise Img2NumError(f"{folder / MODEL_FILE}: corrupt model file (not a complete .keras zip archive)")
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive.
        raise Img2NumError(f"{folder / MODEL_FILE}: cannot load the model ({error})") from None
    _check_model_fits(model, preprocessing, folder)
    calibration = load_calibration(folder)
    return Run(model, preprocessing, config, history, metrics, folder, target_scaling=target_scaling, calibration=calibration)


def _check_model_fits(model, preprocessing: Preprocessing, folder: Path) -> None:
    """Fail in one line when `model.keras` does not take the input `config.json` describes or
    does not give one number per image: the two files come from different runs."""
    try:
        takes, gives = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    except (AttributeError, TypeError, ValueError):  # several inputs or outputs
        takes, gives = None, None
    expected = tuple(preprocessing.input_shape)
    fits = takes is not None and len(takes) == len(expected) and all(t in (None, e) for t, e in zip(takes, expected))
    if not fits or gives not in ((1,), ()):
        size = "x".join("?" if t is None else str(t) for t in takes) if takes is not None else "other"
        outputs = "one number" if gives in ((1,), ()) else f"{'x'.join(str(g) for g in gives)} numbers" if gives else "several outputs"
        raise Img2NumError(
            f"{folder / MODEL_FILE}: the model takes {size} images and gives {outputs} per image, but "
            f"{CONFIG_FILE} describes {shape_text(expected)} images and one number; the two files come from different runs"
        )


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
