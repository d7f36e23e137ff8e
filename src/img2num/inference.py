"""The model's output on preprocessed input, by the fastest path the backend offers."""

from __future__ import annotations

import numpy as np

from img2num import layout
from img2num.config import PREDICT_BATCH_SIZE
from img2num.loop import predict


def predict_inputs(model, inputs: np.ndarray) -> np.ndarray:
    """The model's output (N, 1) on preprocessed `inputs`, by the fastest path for the backend:
    a compiled call per batch shape on JAX (`loop.predict`), the channels-first twin of a
    convolutional model on PyTorch (`layout`), else Keras' `predict`; batches of
    `PREDICT_BATCH_SIZE`."""
    import keras

    if keras.backend.backend() == "jax":
        return predict(model, inputs, PREDICT_BATCH_SIZE)
    if keras.backend.backend() == "torch" and layout.convertible(model):
        return layout.predict_channels_first(model, inputs, PREDICT_BATCH_SIZE)
    return model.predict(inputs, batch_size=PREDICT_BATCH_SIZE, verbose=0)
