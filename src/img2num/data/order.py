"""The seeded order of training batches, shared by every way of training (no Keras needed)."""

from __future__ import annotations

import numpy as np


def batch_order_rng(seed: int) -> np.random.Generator:
    """The generator of the training batches' order, the same for every way of training."""
    return np.random.default_rng(seed)


def epoch_order(rng: np.random.Generator | None, samples: int) -> np.ndarray:
    """Sample indices of one epoch: a permutation drawn from `rng`, or in order when None.

    It orders the batches of `ImageBatches` and of img2num's own loop (`img2num.loop`), so both
    see the same batches for a given seed.
    """
    return np.arange(samples) if rng is None else rng.permutation(samples)


def batch_indices(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`order` cut into batches of `batch_size`, the last one shorter; each batch sorted, which
    reads files in order and does not change a batch's gradient."""
    return [np.sort(order[start : start + batch_size]) for start in range(0, len(order), batch_size)]
