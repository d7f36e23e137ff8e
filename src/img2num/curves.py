"""Learning curves read ahead: an optimistic bound on the validation loss a model can still reach,
which lets the automatic choice stop a candidate that cannot catch the leader."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# How much faster than its recent pace a curve is assumed to keep improving. Curves of the
# models here flatten on a log-epoch scale (each doubling of the epochs gains less than the last),
# so the recent pace, kept up, is already optimistic; twice it leaves room for noise and for a
# learning-rate halving that unlocks a drop.
OPTIMISM = 2.0


def reachable_loss(val_losses: Sequence[float], epochs_ahead: float, optimism: float = OPTIMISM) -> float:
    """An optimistic bound on the lowest validation loss after `epochs_ahead` more epochs.

    The best loss so far improved by some amount over the second half of the epochs run (from
    epoch e/2 to epoch e); the bound assumes that pace per doubling of the epochs, times
    `optimism`, holds until epoch e + epochs_ahead.

    Args:
        val_losses: Validation loss of every epoch so far, in order.
        epochs_ahead: Epochs still possible (the time left over the measured epoch time).
        optimism: Factor on the recent pace.

    Returns:
        The bound, at least 0; 0 when fewer than two epochs say nothing of the pace.
    """
    best = np.minimum.accumulate(np.asarray(val_losses, dtype=np.float64))
    epochs = len(best)
    if epochs < 2 or not np.isfinite(best[-1]):
        return 0.0
    half = max(1, epochs // 2)
    pace = (best[half - 1] - best[-1]) / math.log(epochs / half)
    doublings = math.log((epochs + max(epochs_ahead, 0.0)) / epochs)
    return float(max(0.0, best[-1] - optimism * pace * doublings))
