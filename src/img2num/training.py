"""Training one model: its backend, how its epochs run, its callbacks and the run folder it writes."""

from __future__ import annotations

import datetime
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import numpy as np

from img2num import interrupts
from img2num.autoselect import candidate_models, select_model
from img2num.backends import choose_backend, select_backend
from img2num.bundle import RUN_FOLDER, Run
from img2num.clock import Clock
from img2num.config import AUTO_MODEL, DataConfig, TrainConfig
from img2num.data import Dataset, ImageFiles, near_copy_record, resolve_splits, split_records
from img2num.errors import Img2NumError, Img2NumWarning
from img2num.fitters import fit
from img2num.fitting import Fit, FitInputs
from img2num.intervals import calibrate_run, grid_bounds
from img2num.io import check_replaceable, data_reads, progress_printer, write_text
from img2num.memory import check_image_memory
from img2num.metrics import few_groups_warning, mean_baseline_mse, regression_metrics, weak_fit_warning
from img2num.preprocessing import Preprocessing, TargetScaling
from img2num.registry import check_model_name, model_spec
from img2num.selection import candidates_csv, saved_record, search_timeline
from img2num.startup import __version__

# Keras (and with it the backend) is imported only once `train` has chosen the backend.

# The candidates `--model auto` tried, one row each, in the run folder.
CANDIDATES_FILE = "candidates.csv"
# Which candidate trained when, and why each stopped (`--model auto`, with the pictures).
SEARCH_PICTURE = "search.png"


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
    near_copies: bool = True,
) -> Run:
    """Train a registered model with MSE loss, validating after every epoch, or choose one.

    With `config.model` "auto" (the default), the candidate models (`img2num.autoselect`) train
    by successive halving within `config.time_limit`, and the one with the lowest validation
    loss is the run's model; the run's config records every candidate (`selection`) and the run
    folder lists them in `candidates.csv`. When the run's validation R^2 is below 0.1, the run
    records a `warning` and `train` issues it as an `Img2NumWarning`. Unless a split column, a
    group column or a time column drew the splits, `train` measures the share of validation and
    test images with a near-copy among the training images (crops or frames of the same scenes)
    before it trains, records it in `config["data"]["near_copies"]`, and where the share is high
    issues that record's `warning` as an `Img2NumWarning` (docs/groups.md).

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
        near_copies: Measure near-copies between training and held-out images; `compare`
            measures them once for all its runs and passes False.

    Returns:
        The trained run, with history and metrics for every split given.

    Raises:
        Img2NumError: Bad data, a bad configuration, an unknown model, or a run folder that cannot
            be written: it exists and `overwrite` is false, or it is not a run folder, or it holds
            the data (`img2num.io.check_replaceable`), all found before training.
    """
    started = time.perf_counter()
    auto = config.model == AUTO_MODEL
    if not auto:
        _check_model(config.model)
    if run_dir is not None:
        check_replaceable(run_dir, overwrite, RUN_FOLDER, data_reads(data, val, test))
    if data_options is not None and data_options.image_size is not None:
        check_image_memory(
            data_options.image_size, data_options.channels or 3, config.batch_size, data_options.workers or os.cpu_count() or 1
        )
    splits = resolve_splits(
        data, val, test, val_fraction=config.val_fraction, seed=config.seed, options=data_options
    )
    if run_dir is not None:  # the image files a CSV names may lie anywhere
        check_replaceable(run_dir, overwrite, RUN_FOLDER, data_reads(*splits.values()))
    near = near_copy_record(splits, data_options, config.seed) if near_copies else None
    if near is not None and "warning" in near:
        warnings.warn(near["warning"], Img2NumWarning, stacklevel=2)
    few = few_groups_warning(splits.validation or {})
    if few is not None:
        splits.validation["warning"] = few
        warnings.warn(few, Img2NumWarning, stacklevel=2)
    shape = splits["train"].image_shape
    models = candidate_models(shape) if auto else [config.model]
    # auto runs on the backend of its first candidate, pixel_gap: on PyTorch, where cnn_gap's
    # rule would put 64x64 images, pixel_gap's epochs were many times slower (docs/auto.md).
    keras = select_backend(choose_backend(config.backend, [model_spec(name) for name in models[:1]], shape))
    keras.utils.set_random_seed(config.seed)
    preprocessing = Preprocessing.for_data(splits["train"])
    scaling = TargetScaling.for_targets(splits["train"].y) if config.standardize_targets else TargetScaling()
    inputs = FitInputs(
        config,
        splits,
        splits["train"].with_labels(scaling.scale(splits["train"].y)),
        splits["val"].with_labels(scaling.scale(splits["val"].y)),
        preprocessing,
        scaling.loss_factor,
        Clock(started, config.resolved_time_limit, saving=run_dir is not None),
        progress_printer(stream, quiet),
        None if quiet else stream or sys.stderr,
    )
    fitted = select_model(models, inputs) if auto else fit(inputs)
    config = replace(config, model=fitted.name)
    interrupts.checkpoint("trained")

    record = _run_config(config, splits, fitted)
    if near is not None:
        record["data"]["near_copies"] = near
    if inputs.clock.limit is not None:
        record["time_limit"] = inputs.clock.limit
    record |= fitted.record
    run = Run(fitted.model, preprocessing, record, fitted.history, target_scaling=scaling)
    if fitted.outputs is None:
        predictions = run.predict_splits(splits)
    else:  # the backbone's features of every split are computed already
        predictions = {name: scaling.restore(output).reshape(-1) for name, output in fitted.outputs.items()}
    run.metrics = {name: regression_metrics(splits[name].y, pred) for name, pred in predictions.items()}
    if "selection" in run.config:  # the saved model's own score, beside the one the choice was made on
        run.config["selection"]["saved"] = saved_record(run.config, run.metrics["val"])
    warning = weak_fit_warning(run.metrics["val"], mean_baseline_mse(splits["train"].y, splits["val"].y), config.model)
    if warning is not None:
        run.config["warning"] = warning
        warnings.warn(warning, Img2NumWarning, stacklevel=2)
    calibrate_run(run, splits["val"].y, predictions["val"], splits["train"].y, predictions["train"], config.seed)
    if run_dir is not None:
        run.save(run_dir, overwrite, extra=lambda folder: _write_extras(folder, run, splits, predictions, pictures))
    return run


def _check_model(name: str) -> None:
    try:
        check_model_name(name)
    except Img2NumError as error:
        raise Img2NumError(str(error).replace("known models: ", f"known models: {AUTO_MODEL} (the automatic choice), ")) from None


def _write_extras(folder: Path, run: Run, splits: dict, predictions: dict, pictures: bool = True) -> None:
    for name, text in split_records(splits).items():
        write_text(folder / name, text)
    if "selection" in run.config:
        write_text(folder / CANDIDATES_FILE, candidates_csv(run.config["selection"]))
        if pictures:
            search_timeline(run.config["selection"], folder / SEARCH_PICTURE)
    if pictures:
        _draw_pictures(folder, run, splits, predictions)


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


def _run_config(config: TrainConfig, splits: dict, fitted: Fit) -> dict:
    import keras

    return {
        "img2num_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "train": config.to_dict(),
        "data": _data_record(splits),
        "parameters": int(fitted.model.count_params()),
        "epochs_run": len(fitted.history),
        # The epoch with the lowest validation loss, and the epoch whose weights the model holds
        # (the same with early stopping, else the last).
        "best_epoch": fitted.best_epoch,
        "weights_epoch": fitted.weights_epoch,
        "train_seconds": round(fitted.seconds, 3),
        "trainer": fitted.trainer,
    }


def _data_record(splits) -> dict:
    """Each split's source and size; for image files also where they stream from and skipped
    rows; how validation was drawn (`validation_record`)."""
    record = {name: {"source": split.source, "samples": len(split)} for name, split in splits.items()}
    for name, split in splits.items():
        if isinstance(split, ImageFiles):
            record[name]["streamed"] = True
    if getattr(splits, "rows", 0):
        record["rows_read"] = splits.rows
        record["rows_skipped"] = len(splits.skipped)
        record["options"] = splits.options.to_dict()
    if getattr(splits, "validation", None) is not None:
        record["validation"] = splits.validation
    return record
