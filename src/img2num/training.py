"""Training one model: its backend, how its epochs run, its callbacks and the run folder it writes."""

from __future__ import annotations

import datetime
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import numpy as np

from img2num import interrupts
from img2num.autoselect import Clock, candidate_models, candidates_csv, select_model
from img2num.backbones import is_backbone
from img2num.backends import choose_backend, select_backend
from img2num.bundle import Preprocessing, Run, TargetScaling
from img2num.config import AUTO_MODEL, LR_REDUCTION_FACTOR, MIN_LR_SHARE, DataConfig, TrainConfig
from img2num.data import Dataset, ImageFiles, resolve_splits, split_records
from img2num.data.order import batch_order_rng
from img2num.errors import Img2NumError, Img2NumWarning
from img2num.evaluation import mean_baseline_mse, regression_metrics, weak_fit_warning
from img2num.intervals import calibrate_run, grid_bounds
from img2num.io import check_replaceable
from img2num.models import check_model_name, create_model

# Keras (and with it the backend) is imported only once `train` has chosen the backend.

# The candidates `--model auto` tried, one row each, in the run folder.
CANDIDATES_FILE = "candidates.csv"


def train(
    data: Dataset | ImageFiles | str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    val: Dataset | ImageFiles | str | Path | None = None,
    test: Dataset | ImageFiles | str | Path | None = None,
    data_options: DataConfig | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
    pictures: bool = True,
) -> Run:
    """Train a registered model with MSE loss, validating after every epoch, or choose one.

    With `config.model` "auto" (the default), the candidate models (`img2num.autoselect`) train
    by successive halving within `config.time_limit`, and the one with the lowest validation
    loss is the run's model; the run's config records every candidate (`selection`) and the run
    folder lists them in `candidates.csv`. When the run's validation R^2 is below 0.1, the run
    records a `warning` and `train` issues it as an `Img2NumWarning`.

    By default (see `TrainConfig`) training stops early when the validation loss stops falling
    and keeps the best epoch's weights, halves the learning rate on plateaus, and learns
    standardized targets; `TrainConfig.plain()` trains as the tutorial did. Losses are recorded
    in the targets' original units either way.

    Args:
        data: Training data: a `Dataset` or `ImageFiles`, an `.npz` file, a folder from
            `img2num generate` (its `val.npz` and `test.npz` are used when present), or a label
            CSV naming image files (or a folder holding one); see `resolve_splits`.
        config: Model name, epochs, batch size, learning rate, seed and the training options.
        val: Validation data; when absent (and not in the folder or CSV), `config.val_fraction`
            of the training data is held out at random.
        test: Test data, scored and drawn in the run's pictures when given.
        data_options: How label CSVs and image files are read (columns, channels, image size,
            resize mode, test share, `skip_bad`, in-memory limit); see `DataConfig`.
        run_dir: Folder to save the run in; None keeps the run in memory only.
        overwrite: Replace an existing run folder once the new run is complete.
        quiet: Print no progress.
        stream: Where progress goes (default: stderr).
        pictures: Draw the run's pictures (samples, loss curves, predictions) into `run_dir`;
            False writes every other file, for scripted runs.

    Returns:
        The trained run, with history and metrics for every split given.

    Raises:
        Img2NumError: Bad data, a bad configuration, an unknown model, or an existing run folder
            without `overwrite`.
    """
    started = time.perf_counter()
    auto = config.model == AUTO_MODEL
    if not auto:
        _check_model(config.model)
    if run_dir is not None:
        check_replaceable(run_dir, overwrite)
    splits = resolve_splits(
        data, val, test, val_fraction=config.val_fraction, seed=config.seed, options=data_options
    )
    shape = splits["train"].image_shape
    models = candidate_models(shape) if auto else [config.model]
    # auto runs on the backend of its first candidate, pixel_gap: on PyTorch, where cnn_gap's
    # rule would put 64x64 images, pixel_gap's epochs were many times slower (docs/auto.md).
    select_backend(choose_backend(config.backend, models[:1], shape))
    import keras

    from img2num.callbacks import Progress, TimeLimit

    keras.utils.set_random_seed(config.seed)
    preprocessing = Preprocessing.for_data(splits["train"])
    scaling = TargetScaling.for_targets(splits["train"].y) if config.standardize_targets else TargetScaling()
    train_split = splits["train"].with_labels(scaling.scale(splits["train"].y))
    val_split = splits["val"].with_labels(scaling.scale(splits["val"].y))
    clock = Clock(started, config.resolved_time_limit, saving=run_dir is not None)
    selection = None
    say = progress_printer(stream, quiet)
    outputs = backbone = None

    def fit_backbone(name: str):
        from img2num.backbones.train import train_backbone

        labelled = {"train": train_split, "val": val_split}
        return train_backbone(replace(config, model=name), splits, labelled, preprocessing, scaling.loss_factor, say, clock)

    if auto:
        selection = select_model(
            models, config, train_split, val_split, preprocessing, scaling.loss_factor, clock, splits["val"].y, say,
            fit_backbone,
        )
        model, trainer, recorder, stopper, seconds = (
            selection.model, selection.trainer, selection.recorder, selection.stopper, selection.seconds
        )
        config = replace(config, model=selection.name)
        history, outputs, backbone = recorder.history, selection.outputs, selection.backbone
    elif is_backbone(config.model):
        fitted = fit_backbone(config.model)
        model, trainer, history, stopper, seconds = fitted.model, fitted.trainer, fitted.history, fitted.stopper, fitted.seconds
        outputs, backbone = fitted.outputs, fitted.record
    else:
        model = build_model(config, shape)
        recorder, stopper, callbacks = epoch_callbacks(config, scaling.loss_factor)
        if clock.limit is not None:
            callbacks.append(TimeLimit(clock.training_deadline, compiles_first=True))
        if not quiet:
            callbacks.append(Progress(recorder, config.model, config.epochs, stream or sys.stderr, stopper))
        trainer = choose_trainer(config.trainer, model, splits)
        fit_started = time.perf_counter()
        fit_model(
            model,
            trainer,
            train_split,
            val_split,
            preprocessing,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.seed,
            callbacks=callbacks,
        )
        seconds = time.perf_counter() - fit_started
        history = recorder.history
    interrupts.checkpoint("trained")

    record = _run_config(config, splits, model, seconds, history, stopper) | {"trainer": trainer}
    if clock.limit is not None:
        record["time_limit"] = clock.limit
    if selection is not None:
        record["selection"] = selection.record
    if backbone is not None:
        record["backbone"] = backbone
    run = Run(model, preprocessing, record, history, target_scaling=scaling)
    if outputs is None:
        predictions = run.predict_splits(splits)
    else:  # the backbone's features of every split are computed already
        predictions = {name: scaling.restore(output).reshape(-1) for name, output in outputs.items()}
    run.metrics = {name: regression_metrics(splits[name].y, pred) for name, pred in predictions.items()}
    warning = weak_fit_warning(run.metrics["val"], mean_baseline_mse(splits["train"].y, splits["val"].y), config.model)
    if warning is not None:
        run.config["warning"] = warning
        warnings.warn(warning, Img2NumWarning, stacklevel=2)
    calibrate_run(run, splits["val"].y, predictions["val"], splits["train"].y, config.seed)
    if run_dir is not None:
        run.save(run_dir, overwrite, extra=lambda folder: _write_extras(folder, run, splits, predictions, pictures))
    return run


def _check_model(name: str) -> None:
    try:
        check_model_name(name)
    except Img2NumError as error:
        raise Img2NumError(str(error).replace("known models: ", f"known models: {AUTO_MODEL} (the automatic choice), ")) from None


def choose_trainer(trainer: str, model, splits) -> str:
    """The way epochs run (`TrainConfig.trainer`) for `model` on `splits`.

    "auto" becomes img2num's compiled loop ("scan" or "step", by `loop.choose_mode`) on the JAX
    backend with the data in memory; on PyTorch, Keras' `fit` on a channels-first copy of the
    model ("fit_channels_first", see `img2num.layout`) when the model converts; else Keras'
    "fit".

    Raises:
        Img2NumError: A trainer asked for that cannot run this backend, data or model.
    """
    import keras

    from img2num.layout import convertible
    from img2num.loop import choose_mode

    if trainer == "fit":
        return trainer
    backend = keras.backend.backend()
    if trainer == "fit_channels_first" or (trainer == "auto" and backend == "torch"):
        if backend == "torch" and convertible(model):
            return "fit_channels_first"
        if trainer == "auto":
            return "fit"
        why = f"the {backend} backend" if backend != "torch" else f"model {model.name!r}, whose layers depend on the layout"
        raise Img2NumError(
            f"trainer 'fit_channels_first' needs the PyTorch backend and a model made of convolutions, "
            f"pooling and layers that act per channel, not {why}; use --trainer auto or fit"
        )
    streamed = any(isinstance(split, ImageFiles) for split in splits.values())
    if backend != "jax" or streamed:
        if trainer == "auto":
            return "fit"
        why = f"the {backend} backend" if backend != "jax" else "data streamed from disk"
        raise Img2NumError(f"trainer {trainer!r} needs the JAX backend and data in memory, not {why}; use --trainer auto or fit")
    return choose_mode(model) if trainer == "auto" else trainer


def fit_model(
    model, trainer: str, train_split, val_split, preprocessing, *, batch_size: int, epochs: int, seed: int, callbacks
) -> None:
    """Run the epochs of a compiled model, in place, the way `trainer` (from `choose_trainer`)
    says: img2num's loop, or `model.fit` (on the model or its channels-first twin) with the
    batches in the same seeded order. Every trainer gives the same numbers to float rounding.

    Args:
        model: A compiled Keras model; it ends holding the trained weights.
        trainer: "scan", "step", "fit" or "fit_channels_first".
        train_split: The training split, labelled with the targets the model learns.
        val_split: The validation split, labelled the same way.
        preprocessing: Turns the splits' images into model input.
        batch_size: Samples per step.
        epochs: Most epochs (callbacks may stop sooner).
        seed: Seed of the batch order.
        callbacks: Keras callbacks, called per epoch.
    """
    if trainer in ("fit", "fit_channels_first"):
        from img2num.data.stream import fit_batches
        from img2num.layout import channels_first_twin, copy_state

        trained = model
        if trainer == "fit_channels_first":
            import keras

            trained = channels_first_twin(model)
            trained.compile(optimizer=keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer)), loss=model.loss)
            # Weights, and the optimizer's moments when the model trained before (`--model auto`
            # continues its candidates).
            copy_state(model, trained)
        try:
            fit_batches(
                trained,
                train_split,
                val_split,
                preprocessing,
                batch_size,
                seed,
                channels_first=trained is not model,
                epochs=epochs,
                verbose=0,
                callbacks=callbacks,
            )
        finally:
            if trained is not model:
                copy_state(trained, model)
        return
    from img2num.loop import JaxLoop

    # The loop keeps its compiled steps, so a model trained again (`--model auto` continues its
    # candidates) does not compile again.
    loop = getattr(model, "_img2num_loop", None)
    if loop is None or loop.mode != trainer:
        loop = model._img2num_loop = JaxLoop(model, trainer)
    loop.fit(
        preprocessing.apply(train_split.x, train_split.source),
        train_split.y,
        (preprocessing.apply(val_split.x, val_split.source), val_split.y),
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        rng=batch_order_rng(seed),
    )


def _write_extras(folder: Path, run: Run, splits: dict, predictions: dict, pictures: bool = True) -> None:
    from img2num.io import write_text

    for name, text in split_records(splits).items():
        write_text(folder / name, text)
    if "selection" in run.config:
        write_text(folder / CANDIDATES_FILE, candidates_csv(run.config["selection"]))
    if pictures:
        _draw_pictures(folder, run, splits, predictions)


def build_model(config: TrainConfig, input_shape: tuple[int, int, int]):
    """The registered model of `config`, behind its augmentation when asked, compiled with MSE
    loss and Adam (AdamW with weight decay)."""
    import keras

    model = create_model(config.model, input_shape)
    if config.augment:
        from img2num.layers import with_augmentation

        model = with_augmentation(model, config.seed)
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def epoch_callbacks(config: TrainConfig, loss_factor: float) -> tuple:
    """The callbacks every training by `config` runs: the epoch record (losses in the targets'
    units by `loss_factor`), early stopping and the learning-rate halving as `config` asks.

    Returns:
        The `EpochRecorder`, the `EarlyStop` (None when patience is 0), and the list of all.
    """
    from img2num.callbacks import EpochRecorder

    recorder = EpochRecorder(loss_factor)
    stopper = _early_stopping(config)
    return recorder, stopper, [c for c in (recorder, stopper, _lr_reduction(config)) if c is not None]


def _early_stopping(config: TrainConfig):
    from img2num.callbacks import EarlyStop

    return None if config.patience == 0 else EarlyStop(config.patience, config.restore_best)


def _lr_reduction(config: TrainConfig):
    import keras

    if config.lr_patience == 0:
        return None
    return keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss",
        factor=LR_REDUCTION_FACTOR,
        patience=config.lr_patience,
        min_lr=config.learning_rate * MIN_LR_SHARE,
    )


def progress_printer(stream: TextIO | None, quiet: bool = False):
    """A function that writes one progress line to `stream` (default: stderr), or nothing when
    `quiet`."""
    if quiet:
        return lambda text: None
    stream = stream or sys.stderr

    def say(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    return say


def _draw_pictures(folder: Path, run: Run, splits: dict, predictions: dict) -> None:
    from img2num import plots
    from img2num.config import GRID_COLS, GRID_ROWS

    def first(split):  # only the images drawn are decoded, when the split is on disk
        return split.take(np.arange(min(len(split), GRID_ROWS * GRID_COLS))).to_dataset()

    name = run.model_name
    train = first(splits["train"])
    plots.sample_grid(train.x, train.y, folder / "samples.png", title="training samples")
    interrupts.checkpoint("drawing")
    plots.loss_curves(run.history, folder / "loss.png", name)
    shown = "test" if "test" in splits else "val"
    drawn = first(splits[shown])
    plots.sample_grid(
        drawn.x,
        drawn.y,
        folder / "predictions.png",
        predictions=predictions[shown][: len(drawn)],
        title=f"{name}: {'test' if shown == 'test' else 'validation'} predictions"
        + (" with 90% intervals" if run.calibration is not None else ""),
        bounds=grid_bounds(run, predictions[shown][: len(drawn)]),
    )


def _run_config(
    config: TrainConfig,
    splits: dict,
    model,
    seconds: float,
    history: list[dict],
    stopper,
) -> dict:
    import keras

    from img2num import __version__

    best_epoch = min(history, key=lambda row: row["val_loss"])["epoch"]
    if stopper is not None:
        best_epoch = stopper.best_epoch + 1

    return {
        "img2num_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "train": config.to_dict(),
        "data": _data_record(splits),
        "parameters": int(model.count_params()),
        "epochs_run": len(history),
        # The epoch with the lowest validation loss, and the epoch whose weights the model holds
        # (the same with early stopping, else the last).
        "best_epoch": best_epoch,
        "weights_epoch": best_epoch if stopper is not None and stopper.restore_best_weights else len(history),
        "train_seconds": round(seconds, 3),
    }


def _data_record(splits) -> dict:
    """Each split's source and size; for image files also where they stream from and skipped rows."""
    record = {name: {"source": split.source, "samples": len(split)} for name, split in splits.items()}
    for name, split in splits.items():
        if isinstance(split, ImageFiles):
            record[name]["streamed"] = True
    if getattr(splits, "rows", 0):
        record["rows_read"] = splits.rows
        record["rows_skipped"] = len(splits.skipped)
        record["options"] = splits.options.to_dict()
    return record
