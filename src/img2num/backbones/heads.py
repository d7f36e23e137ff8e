"""Regression heads on a frozen backbone's feature vectors: ridge regression and a small MLP,
each fitted on the training split, the one with the lower validation error kept; and the run's
model, which computes the features and applies the head in one Keras model."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

# Ridge penalties tried, as shares of the largest squared singular value of the scaled features.
RIDGE_PENALTIES = np.logspace(-7, 0, 29)
# A feature's spread is floored at this share of the median spread before scaling: dividing a
# nearly constant feature by its tiny spread turns rounding noise into a strong input (a first
# probe lost R^2 from 0.69 to -2.3 that way).
SPREAD_FLOOR = 0.1
MLP_WIDTH = 256
MLP_EPOCHS = 200
MLP_PATIENCE = 10
MLP_BATCH = 64
MLP_LEARNING_RATE = 1e-3


@dataclass
class HeadFit:
    """A fitted head and its record.

    Attributes:
        kind: "ridge" or "mlp".
        layers: Keras layers from scaled features to the output, built and fitted.
        val_mse: Validation MSE in the units the head learned.
        history: Per-epoch records (one row for ridge).
        detail: JSON-ready facts (the penalty, the epochs).
    """

    kind: str
    layers: list
    val_mse: float
    history: list[dict]
    detail: dict = field(default_factory=dict)


def feature_scaling(features: np.ndarray, groups: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the floored spread (`SPREAD_FLOOR`) of each feature over training vectors.

    With `groups` (the sizes of consecutive groups of features, such as one backbone stage's
    pooled channels), each group's spreads are multiplied by the square root of its size, so
    that every group weighs the same in a ridge penalty: otherwise the 2,560 numbers of Lite0's
    last stage drown the 6 band statistics and the early stages (on the counting task, test MSE
    0.88 with equal weights per feature, 0.60 with equal weights per group).
    """
    mean = features.mean(axis=0)
    spread = features.std(axis=0)
    positive = spread[spread > 0]
    floor = SPREAD_FLOOR * float(np.median(positive)) if len(positive) else 1.0
    spread = np.maximum(spread, max(floor, 1e-12))
    if groups is not None:
        if sum(groups) != features.shape[1]:
            raise ValueError(f"groups of {sum(groups)} features for vectors of {features.shape[1]}")
        spread = spread * np.sqrt(np.repeat(np.asarray(groups, np.float64), groups))
    return mean.astype(np.float32), spread.astype(np.float32)


def fit_ridge(z_train: np.ndarray, y_train: np.ndarray, z_val: np.ndarray, y_val: np.ndarray, loss_factor: float) -> HeadFit:
    """Ridge regression on scaled features, its penalty chosen on the validation split.

    One eigendecomposition gives the fit at every penalty of `RIDGE_PENALTIES`: of the images'
    Gram matrix when there are fewer images than features (a backbone's 3,000 features on a few
    hundred photos), else of the features' (an SVD of 1500 x 2950 features took 58 s on a
    loaded 2-core machine; the Gram matrix's eigendecomposition takes about a second).
    """
    import keras

    started = time.perf_counter()
    z = z_train.astype(np.float64)
    y = y_train.astype(np.float64).reshape(-1)
    z_mean, y_mean = z.mean(axis=0), y.mean()
    centred = z - z_mean
    by_images = len(z) <= z.shape[1]
    values, vectors = np.linalg.eigh(centred @ centred.T if by_images else centred.T @ centred)
    values = np.maximum(values, 0.0)
    projected = vectors.T @ (y - y_mean if by_images else centred.T @ (y - y_mean))
    best = None
    for share in RIDGE_PENALTIES:
        solved = vectors @ (projected / (values + share * values[-1]))
        weights = centred.T @ solved if by_images else solved
        bias = y_mean - z_mean @ weights
        val_mse = float(np.mean((z_val @ weights + bias - y_val.reshape(-1)) ** 2))
        if best is None or val_mse < best[0]:
            best = (val_mse, share, weights, bias)
    val_mse, share, weights, bias = best
    train_mse = float(np.mean((z @ weights + bias - y) ** 2))
    layer = keras.layers.Dense(1, name="ridge")
    layer.build((None, z.shape[1]))
    layer.set_weights([weights.reshape(-1, 1).astype(np.float32), np.array([bias], np.float32)])
    history = [
        {"epoch": 1, "loss": train_mse * loss_factor, "val_loss": val_mse * loss_factor, "seconds": time.perf_counter() - started}
    ]
    return HeadFit("ridge", [layer], val_mse, history, {"penalty_share": float(share)})


def fit_mlp(
    z_train: np.ndarray, y_train: np.ndarray, z_val: np.ndarray, y_val: np.ndarray, loss_factor: float, seed: int
) -> HeadFit:
    """One hidden Dense layer of `MLP_WIDTH` on scaled features, trained with Adam and MSE until
    the validation loss stops falling for `MLP_PATIENCE` epochs; the best epoch's weights."""
    import keras

    from img2num.callbacks import EpochRecorder

    keras.utils.set_random_seed(seed)
    hidden = keras.layers.Dense(MLP_WIDTH, activation="relu", name="head_hidden")
    output = keras.layers.Dense(1, name="head_output")
    inputs = keras.Input((z_train.shape[1],))
    model = keras.Model(inputs, output(hidden(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(MLP_LEARNING_RATE), loss="mse")
    recorder = EpochRecorder(loss_factor)
    stop = keras.callbacks.EarlyStopping(patience=MLP_PATIENCE, restore_best_weights=True)
    model.fit(
        z_train, y_train.reshape(-1, 1), validation_data=(z_val, y_val.reshape(-1, 1)),
        batch_size=MLP_BATCH, epochs=MLP_EPOCHS, shuffle=True, verbose=0, callbacks=[recorder, stop],
    )
    val_mse = float(np.mean((model.predict(z_val, batch_size=1024, verbose=0).reshape(-1) - y_val.reshape(-1)) ** 2))
    return HeadFit("mlp", [hidden, output], val_mse, recorder.history, {"epochs": len(recorder.history)})


def choose_head(
    features: dict[str, np.ndarray], y_train, y_val, loss_factor: float, seed: int, heads=("ridge", "mlp"), groups=None
):
    """Fit each head on the training features and keep the one with the lower validation MSE.

    Args:
        features: Feature vectors of the "train" and "val" splits.
        y_train: Training targets, in the units the head learns (standardized).
        y_val: Validation targets, the same units.
        loss_factor: Turns those units' squared errors into the targets' own.
        seed: Seed of the MLP's weights and batch order.
        heads: Which heads to try.
        groups: Sizes of the feature groups weighed alike (`feature_scaling`), or None.

    Returns:
        The feature scaling (mean, spread), the chosen `HeadFit`, and every head's validation
        MSE in the targets' units.
    """
    mean, spread = feature_scaling(features["train"], groups)
    z_train = (features["train"] - mean) / spread
    z_val = (features["val"] - mean) / spread
    fits = []
    for kind in heads:
        fit = fit_ridge if kind == "ridge" else fit_mlp
        extra = () if kind == "ridge" else (seed,)
        fits.append(fit(z_train, y_train, z_val, y_val, loss_factor, *extra))
    chosen = min(fits, key=lambda fit: fit.val_mse)
    return (mean, spread), chosen, {fit.kind: fit.val_mse * loss_factor for fit in fits}


def head_outputs(features: np.ndarray, scaling: tuple[np.ndarray, np.ndarray], head: HeadFit) -> np.ndarray:
    """The head's outputs (N, 1) on feature vectors, in NumPy, as the run's model computes them."""
    import keras

    values = keras.ops.convert_to_tensor((features - scaling[0]) / scaling[1])
    for layer in head.layers:
        values = layer(values)
    return np.asarray(keras.ops.convert_to_numpy(values), np.float32)


def run_model(features_model, scaling: tuple[np.ndarray, np.ndarray], head: HeadFit, name: str):
    """One Keras model from the run's model input to the number: the frozen feature model, the
    feature scaling and the head."""
    import keras

    inputs = keras.Input(features_model.input_shape[1:])
    values = keras.layers.Normalization(mean=scaling[0], variance=np.square(scaling[1]), name="feature_scaling")(
        features_model(inputs)
    )
    for layer in head.layers:
        values = layer(values)
    return keras.Model(inputs, values, name=name)
