"""Batches for Keras' `fit`: arrays in memory, or image files on disk decoded by worker processes.

Imports Keras, so only training loads it.
"""

from __future__ import annotations

import math
import os
import weakref

import keras
import numpy as np

from img2num.data.files import ImageFiles, stack_decoded
from img2num.data.decoding import decode_chunk, process_pool
from img2num.data.order import batch_indices, batch_order_rng, epoch_order

# Batches decoded ahead of the one Keras asks for, per worker.
_AHEAD_PER_WORKER = 2


def fit_batches(model, train, val, preprocessing, batch_size: int, seed: int, channels_first: bool = False, **fit_options):
    """Keras' `model.fit` on a training and a validation split, batch by batch.

    Both go in as `ImageBatches`, the training batches in the order `batch_order_rng(seed)`
    draws, exactly as img2num's own loop (`img2num.loop`) orders them, so every backend and
    trainer sees the same batches (Keras would shuffle with NumPy's global random state). Data
    on disk (`ImageFiles`) is decoded batch by batch.

    Args:
        model: A compiled Keras model.
        train: The training split; its labels are the targets (see `with_labels`).
        val: The validation split.
        preprocessing: Turns decoded images into model input.
        batch_size: Samples per step.
        seed: Seed of the batch order.
        channels_first: Give the model its images as (channels, height, width), for a model
            built channels first (`img2num.layout`).
        **fit_options: More arguments of `model.fit` (epochs, callbacks, verbose).

    Returns:
        The `History` that `model.fit` returns.
    """
    batches = ImageBatches(train, preprocessing, batch_size, shuffle=True, seed=seed, channels_first=channels_first)
    val_batches = ImageBatches(val, preprocessing, batch_size, channels_first=channels_first)
    # Built from a validation batch: Keras would build from a training batch and so draw an
    # extra epoch order before the first epoch.
    model._symbolic_build(data_batch=val_batches[0])
    return model.fit(batches, validation_data=val_batches, shuffle=False, **fit_options)


class ImageBatches(keras.utils.PyDataset):
    """Batches of (model input, labels) decoded from image files while Keras trains.

    The files are decoded by a pool of worker processes a few batches ahead of the one asked
    for; the pool lives for one epoch. In-memory data (`Dataset`) is batched without decoding.
    """

    def __init__(
        self, data, preprocessing, batch_size: int, shuffle: bool = False, seed: int = 0, channels_first: bool = False
    ) -> None:
        # Keras' own workers are threads or forked Keras state; our pool decodes instead.
        super().__init__(workers=1, use_multiprocessing=False)
        self.data = data
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.rng = batch_order_rng(seed) if shuffle else None
        self.channels_first = channels_first
        self._processes = getattr(data, "workers", None) or os.cpu_count() or 1
        self._pending: dict[int, object] = {}
        self._pool = None
        self._batches: list[np.ndarray] | None = None
        weakref.finalize(self, _shutdown, self.__dict__)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __getitem__(self, index: int):
        indices = self._indices(index)
        if not isinstance(self.data, ImageFiles):
            x = self.data.x[indices]
        else:
            if self._processes > 1:
                for ahead in range(index, min(len(self), index + 1 + _AHEAD_PER_WORKER * self._processes)):
                    self._submit(ahead)
                results = self._pending.pop(index).result()
            else:
                results = decode_chunk([self.data.paths[i] for i in indices], self.data.spec, True, False, None)
            x = stack_decoded([self.data.paths[i] for i in indices], results, self.data.spec)
        y = None if self.data.y is None else self.data.y[indices]
        inputs = self.preprocessing.apply(x, self.data.source)
        if self.channels_first:
            inputs = np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))
        return (inputs,) if y is None else (inputs, y)

    def on_epoch_begin(self) -> None:
        self._new_order()

    def on_epoch_end(self) -> None:
        _shutdown(self.__dict__)

    def _indices(self, index: int) -> np.ndarray:
        if self._batches is None:
            self._new_order()
        return self._batches[index]

    def _submit(self, index: int) -> None:
        if index in self._pending:
            return
        if self._pool is None:
            self._pool = process_pool(self._processes)
        from PIL import Image

        paths = [self.data.paths[i] for i in self._indices(index)]
        self._pending[index] = self._pool.submit(
            decode_chunk, paths, self.data.spec, True, False, Image.MAX_IMAGE_PIXELS
        )

    def _new_order(self) -> None:
        self._batches = batch_indices(epoch_order(self.rng, len(self.data)), self.batch_size)


def _shutdown(state: dict) -> None:
    pool = state.get("_pool")
    for future in state.get("_pending", {}).values():
        future.cancel()
    state["_pending"] = {}
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    state["_pool"] = None
