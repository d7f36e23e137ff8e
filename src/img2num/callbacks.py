"""Keras callbacks of img2num's training: the per-epoch record, the progress lines, the time
limit, and callbacks that carry over several `fit` calls."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

import keras


class EpochRecorder(keras.callbacks.Callback):
    """Keras callback keeping `epoch`, `loss`, `val_loss`, wall seconds and the learning rate of
    every epoch.

    Args:
        loss_factor: Factor turning the model's losses into the targets' original units (the
            squared standard deviation when targets are standardized), so loss curves of models
            trained either way compare directly.
    """

    def __init__(self, loss_factor: float = 1.0) -> None:
        super().__init__()
        self.loss_factor = loss_factor
        self.history: list[dict] = []
        self._started = 0.0
        self._learning_rate = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        self.history.append(
            {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]) * self.loss_factor,
                "val_loss": float(logs["val_loss"]) * self.loss_factor,
                "seconds": time.perf_counter() - self._started,
                "learning_rate": self._learning_rate,
            }
        )


# The share of the best validation loss by which a new one must be lower to count as better
# for early stopping (far below the noise of any validation split: 9% at 250 images).
MIN_IMPROVEMENT = 0.001


class EarlyStop(keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping` on `val_loss`, which can also restore the best epoch's weights
    only when the epoch limit, not early stopping, ends training; a loss counts as better only
    when it is lower than the best by `MIN_IMPROVEMENT` of it.

    Args:
        patience: Epochs without a lower validation loss before training stops.
        restore_best: True restores the best epoch's weights, False keeps the last epoch's,
            None restores only when training was not stopped early (see
            `TrainConfig.restore_best`). After training, `restore_best_weights` says which
            happened.
    """

    def __init__(self, patience: int, restore_best: bool | None) -> None:
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=restore_best is not False)
        self.restore_at_limit_only = restore_best is None

    def _is_improvement(self, monitor_value, reference_value) -> bool:
        # An improvement must lower the loss by MIN_IMPROVEMENT of itself: at the smallest
        # learning rate a validation loss can creep down by 1e-5 of itself an epoch, and each
        # creep restarted the patience (digits, cnn_gap: 300 epochs where 151 held every gain
        # above 0.1%; benchmarks/kept_weights.py and docs/auto.md).
        if reference_value is None:
            return True
        return bool(monitor_value < reference_value * (1.0 - MIN_IMPROVEMENT))

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        if self.restore_at_limit_only:
            self.restore_best_weights = True

    def on_train_end(self, logs=None) -> None:
        if self.restore_at_limit_only and self.stopped_epoch > 0:
            self.restore_best_weights = False
        super().on_train_end(logs)


class WeightAverage(keras.callbacks.Callback):
    """Keras callback that ends training with the average of the last `epochs` epochs' weights
    (stochastic weight averaging over the end of training). It must come after early stopping,
    whose restoring of the best weights it replaces; `averaged` says which epochs it averaged."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.averaged: tuple[int, int] | None = None
        self._kept: list[tuple[int, list]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._kept.append((epoch + 1, self.model.get_weights()))
        del self._kept[: -self.epochs]

    def on_train_end(self, logs=None) -> None:
        if not self._kept:
            return
        weights = [sum(arrays) / len(self._kept) for arrays in zip(*(kept for _, kept in self._kept))]
        self.model.set_weights([w.astype(kept.dtype) for w, kept in zip(weights, self._kept[-1][1])])
        self.averaged = (self._kept[0][0], self._kept[-1][0])


class Progress(keras.callbacks.Callback):
    """Keras callback printing the recorder's latest epoch: one updating line on a terminal,
    else a line at the first epoch, every 10% and the last; and, when training stopped early,
    the epoch whose weights were kept. It must come after the recorder."""

    def __init__(
        self,
        recorder: EpochRecorder,
        name: str,
        epochs: int,
        stream: TextIO,
        stopper: EarlyStop | None = None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.stopper = stopper
        self.name = name
        self.epochs = epochs
        self.stream = stream
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.every = max(1, epochs // 10)
        self._printed = 0

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        row = self.recorder.history[-1]
        done = row["epoch"]
        if self.interactive:
            self.stream.write("\r" + self._line(row) + ("\n" if done == self.epochs else ""))
        elif done == 1 or done % self.every == 0 or done == self.epochs:
            self.stream.write(self._line(row) + "\n")
            self._printed = done
        self.stream.flush()

    def on_train_end(self, logs=None) -> None:
        history = self.recorder.history
        if self.stopper is None or not history:
            return
        last = history[-1]
        if last["epoch"] < self.epochs:
            if self.interactive:
                self.stream.write("\n")
            elif self._printed != last["epoch"]:
                self.stream.write(self._line(last) + "\n")
            self.stream.write(f"{self.name} stopped early: no lower val_loss for {self.stopper.patience} epochs\n")
        kept = history[self.stopper.best_epoch] if self.stopper.restore_best_weights else last
        self.stream.write(f"{self.name} kept the weights of epoch {kept['epoch']} (val_loss {kept['val_loss']:.4g})\n")
        self.stream.flush()

    def _line(self, row: dict) -> str:
        return (
            f"{self.name} epoch {row['epoch']}/{self.epochs}  loss {row['loss']:.4g}  "
            f"val_loss {row['val_loss']:.4g}  {row['seconds']:.3f} s/epoch"
        )


class TimeLimit(keras.callbacks.Callback):
    """Keras callback that ends training after an epoch when another epoch as long as the
    longest of the last three would end past `deadline` (a `time.perf_counter()` value);
    `stopped` says whether it did.

    Args:
        deadline: When training must end.
        compiles_first: The first epoch compiles the model, so its length says nothing of the
            next: after it, training stops only when the deadline has passed, and it is left
            out of the estimate afterwards.
    """

    def __init__(self, deadline: float, compiles_first: bool = False) -> None:
        super().__init__()
        self.deadline = deadline
        self.compiles_first = compiles_first
        self.stopped = False
        self._began = 0.0
        self._seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        now = time.perf_counter()
        self._seconds.append(now - self._began)
        measured = self._seconds[1:] if self.compiles_first else self._seconds
        if now + max(measured[-3:], default=0.0) > self.deadline:
            self.stopped = True
            self.model.stop_training = True


class Resumable(keras.callbacks.Callback):
    """Keras callbacks that carry over several `fit` calls of one model as if they were one:
    epochs count on from call to call, `on_train_begin` reaches them once, and `on_train_end`
    only through `finish`. So early stopping, the learning-rate schedule and the epoch record
    continue where the last call left them."""

    def __init__(self, callbacks: Sequence) -> None:
        super().__init__()
        self.callbacks = list(callbacks)
        self.epochs_done = 0
        self._began = False
        self._offset = 0

    def set_model(self, model) -> None:
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs=None) -> None:
        self._offset = self.epochs_done
        if not self._began:
            self._began = True
            for callback in self.callbacks:
                callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch + self._offset, logs)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch + self._offset, logs)
        self.epochs_done = epoch + self._offset + 1

    def finish(self, model) -> None:
        """End training for good on `model` (not a channels-first twin it trained as)."""
        self.set_model(model)
        for callback in self.callbacks:
            callback.on_train_end({})
