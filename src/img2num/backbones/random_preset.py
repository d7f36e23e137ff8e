"""A tiny EfficientNet-style backbone with seeded random weights, saved as a local preset: for
tests and docs, loaded like any preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2num.backbones.initializers import cheap_initializers
from img2num.backbones.lite0 import efficientnet_lite_config
from img2num.backbones.preset_writing import check_target, save_preset


def save_random_preset(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny EfficientNet-style backbone with random weights as a local preset.

    Three stages of Lite0's block types (a first "v1" block, then "unfused" MBConv blocks with
    TensorFlow "same" padding), a few thousand parameters, stages P1-P3, smallest side 8, and a
    normalisation pixels / 127.5 - 1: for tests and docs, loaded through `load_backbone` like any
    preset. Needs Keras (imported here on its current backend).

    Args:
        folder: Where to write: a new or empty folder.
        seed: Seeds the weights; different seeds give different weights and fingerprints.

    Returns:
        The preset folder.

    Raises:
        Img2NumError: The folder exists and is not empty.
    """
    folder = Path(folder).expanduser()
    check_target(folder, overwrite=False)
    import keras_hub

    with cheap_initializers():
        backbone = keras_hub.models.EfficientNetBackbone(**_tiny_config(), name="random_efficientnet")
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        shape = tuple(variable.shape)
        name = variable.path.rsplit("/", 1)[-1]
        if name == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "gamma":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name in ("beta", "moving_mean", "bias"):
            value = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        variable.assign(value.astype("float32"))
    return save_preset(backbone, folder, 1.0 / 127.5, -1.0, (32, 32), overwrite=False, source="random")


def _tiny_config() -> dict:
    return efficientnet_lite_config(
        # keras-hub 0.32 leaves num_features out of the saved config (a reloaded backbone has
        # 1280 top filters), so the top is narrowed through the last stage's width
        # coefficient instead: 640, 960 and 1280 filters times 1/40 are 16, 24 and 32.
        stackwise_width_coefficients=[1.0, 1.0, 0.025],
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 5],
        stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[8, 8, 640],
        stackwise_output_filters=[8, 16, 960],
        stackwise_expansion_ratios=[1, 2, 2],
        stackwise_strides=[1, 2, 2],
        stackwise_squeeze_and_excite_ratios=[0] * 3,
        stackwise_block_types=["v1", "unfused", "unfused"],
        stackwise_force_input_filters=[0] * 3,
        stackwise_nores_option=[False] * 3,
    )
