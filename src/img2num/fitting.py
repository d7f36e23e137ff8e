"""Fitting one Keras model by epochs: what every fitter is given (`FitInputs`) and returns (`Fit`),
the model's build and compile, the way its epochs run (img2num's loop or Keras' `fit`), its
callbacks, and `fit_by_epochs`, the fitter of the registered architectures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from img2num.clock import Clock
from img2num.config import LR_REDUCTION_FACTOR, MIN_LR_SHARE, TrainConfig
from img2num.data import ImageFiles
from img2num.data.order import batch_order_rng
from img2num.errors import Img2NumError
from img2num.models import create_model
from img2num.parallel import PARALLEL_TRAINER, data_parallel, resolve_devices
from img2num.preprocessing import Preprocessing

# Keras (and with it the backend) is imported only once `train` has chosen the backend.


@dataclass
class FitInputs:
    """What every fitter is given: the settings, the data, the time limit and where to report.

    Attributes:
        config: The `TrainConfig`; its model is the one to fit (the search passes each
            candidate's name in a copy).
        splits: Every split of the run by name (`train`, `val`, maybe `test`), original labels.
        train: The training split, labelled with the targets the model learns.
        val: The validation split, labelled the same way.
        preprocessing: Turns the splits' images into model input.
        loss_factor: Turns losses of the learned targets into the targets' units.
        clock: The `train` call's time limit.
        say: Where progress lines go.
        stream: Where per-epoch progress goes, or None for none (quiet).
    """

    config: TrainConfig
    splits: dict
    train: object
    val: object
    preprocessing: Preprocessing
    loss_factor: float
    clock: Clock
    say: Callable[[str], None] = lambda text: None
    stream: TextIO | None = None


@dataclass
class Fit:
    """A fitted model: what every fitter and the automatic choice return.

    Attributes:
        name: The model's name (the winner's, for the automatic choice).
        model: The trained Keras model, from model input to the learned number.
        trainer: How it was trained: "scan", "step", "fit", "fit_channels_first", "features"
            (a head on frozen features) or "finetune".
        history: Per-epoch records: `epoch`, `loss`, `val_loss` (targets' units), `seconds`,
            `learning_rate`.
        seconds: Seconds of fitting.
        best_epoch: The epoch with the lowest validation loss (0: the frozen head of
            fine-tuning).
        weights_epoch: The epoch whose weights the model holds.
        outputs: The model's outputs (N, 1) on every split by name when the fitter computed
            them already (a backbone's features), else None.
        record: JSON-ready facts the run keeps beside its configuration (`backbone`,
            `selection`).
    """

    name: str
    model: object
    trainer: str
    history: list[dict]
    seconds: float
    best_epoch: int
    weights_epoch: int
    outputs: dict | None = None
    record: dict = field(default_factory=dict)


def kept_epochs(history: list[dict], stopper, averaged: bool = False) -> tuple[int, int]:
    """The best epoch and the epoch whose weights the model holds after epochs recorded in
    `history`: early stopping's best when there is one, else the lowest validation loss; its
    weights when early stopping restored them, else the last epoch's (the last of those
    averaged, when `averaged`)."""
    best = min(history, key=lambda row: row["val_loss"])["epoch"] if history else 0
    if stopper is not None:
        best = stopper.best_epoch + 1
    kept = best if stopper is not None and stopper.restore_best_weights else (history[-1]["epoch"] if history else 0)
    if averaged:
        kept = history[-1]["epoch"] if history else 0
    return best, kept


def fit_by_epochs(inputs: FitInputs) -> Fit:
    """Build `inputs.config.model`, a registered architecture, and train it by epochs with MSE
    loss, validating after every epoch, within the clock's training time.

    Returns:
        The `Fit`.

    Raises:
        Img2NumError: The trainer asked for cannot run this backend, data or model.
    """
    from img2num.callbacks import Progress, TimeLimit

    config, clock = inputs.config, inputs.clock
    sizes = {"training": len(inputs.train), "validation": len(inputs.val)}
    devices = resolve_devices(config.devices, config.batch_size, config.trainer, sizes)
    with data_parallel(devices):  # the model's variables are made, and its batches split, over the devices
        model = build_model(config, inputs.train.image_shape)
        recorder, stopper, callbacks = epoch_callbacks(config, inputs.loss_factor)
        if clock.limit is not None:
            callbacks.append(TimeLimit(clock.training_deadline, compiles_first=True))
        if inputs.stream is not None:
            callbacks.append(Progress(recorder, config.model, config.epochs, inputs.stream, stopper))
        trainer = choose_trainer(PARALLEL_TRAINER if devices > 1 else config.trainer, model, inputs.splits)
        started = time.perf_counter()
        run_epochs(
            model,
            trainer,
            inputs.train,
            inputs.val,
            inputs.preprocessing,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.seed,
            callbacks=callbacks,
        )
    best, kept = kept_epochs(recorder.history, stopper, config.average_epochs > 0)
    return Fit(config.model, model, trainer, recorder.history, time.perf_counter() - started, best, kept)


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


def run_epochs(
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


def epoch_callbacks(config: TrainConfig, loss_factor: float) -> tuple:
    """The callbacks every training by `config` runs: the epoch record (losses in the targets'
    units by `loss_factor`), early stopping and the learning-rate halving as `config` asks.

    Returns:
        The `EpochRecorder`, the `EarlyStop` (None when patience is 0), and the list of all.
    """
    from img2num.callbacks import EarlyStop, EpochRecorder, WeightAverage

    recorder = EpochRecorder(loss_factor)
    stopper = None if config.patience == 0 else EarlyStop(config.patience, config.restore_best)
    # After early stopping, whose restoring of the best weights the average replaces.
    average = WeightAverage(config.average_epochs) if config.average_epochs > 0 else None
    return recorder, stopper, [c for c in (recorder, stopper, average, _lr_reduction(config)) if c is not None]


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
