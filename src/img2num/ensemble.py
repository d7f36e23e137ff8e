"""Weighted ensembles of fitted models: weights chosen greedily on validation predictions (as
AutoGluon's weighted ensemble does, after Caruana et al. 2004), and one Keras model that averages
its members, so the run predicts, saves and exports like any other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The model name of a run whose model is an ensemble; its members are in the run's `ensemble`.
ENSEMBLE_MODEL = "ensemble"
# Greedy steps: each adds one member (repeats allowed), so weights are multiples of 1/STEPS.
STEPS = 20


def greedy_weights(predictions: Sequence[np.ndarray], targets: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Ensemble weights by greedy selection with replacement: each step adds the member whose
    inclusion gives the lowest MSE of the running average; the first step picks the best member.

    Args:
        predictions: Each member's predictions of `targets`, one array of N each.
        targets: The N true values.
        steps: How many members are added.

    Returns:
        One weight per member, summing to 1 (0 for a member never added).
    """
    stacked = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in predictions])
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    counts = np.zeros(len(stacked))
    total = np.zeros_like(targets)
    for step in range(steps):
        errors = [np.mean(((total + member) / (step + 1) - targets) ** 2) for member in stacked]
        chosen = int(np.argmin(errors))  # ties go to the earlier (better-ranked) member
        counts[chosen] += 1
        total += stacked[chosen]
    return counts / counts.sum()


def ensemble_model(members: Sequence, weights: Sequence[float], input_shape: tuple[int, ...]):
    """One Keras model whose output is the weighted sum of its members' outputs.

    Args:
        members: Keras models taking the same input and giving (N, 1) each.
        weights: One weight per member, summing to 1.
        input_shape: The input shape without the batch axis.
    """
    import keras

    from img2num.layers import WeightedSum

    inputs = keras.Input(shape=tuple(input_shape))
    outputs = [member(inputs) for member in members]
    return keras.Model(inputs, WeightedSum(list(weights), name="weighted_sum")(outputs), name="ensemble")
