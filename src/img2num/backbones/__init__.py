"""Pretrained backbones from keras-hub as img2num models: `backbone:PRESET` (a head on the frozen
backbone's features) and `finetune:PRESET` (the backbone's last stages trained too). PRESET is a
keras-hub preset name, an hf:// or kaggle:// handle, a local preset folder, or
`efficientnet_lite0`, which img2num writes offline from its weights package; docs/backbones.md."""

from __future__ import annotations

from img2num.errors import Img2NumError

BACKBONE_PREFIX = "backbone:"
FINETUNE_PREFIX = "finetune:"


def is_backbone(name: str) -> bool:
    """Whether a model name names a pretrained backbone (frozen or fine-tuned)."""
    return isinstance(name, str) and name.startswith((BACKBONE_PREFIX, FINETUNE_PREFIX))


def is_finetune(name: str) -> bool:
    """Whether a model name asks for the backbone to be fine-tuned."""
    return isinstance(name, str) and name.startswith(FINETUNE_PREFIX)


def backbone_spec(name: str) -> str:
    """The preset part of a `backbone:PRESET` or `finetune:PRESET` model name.

    Raises:
        Img2NumError: Nothing follows the prefix.
    """
    spec = name.split(":", 1)[1].strip()
    if not spec:
        raise Img2NumError(
            f"model {name!r} names no backbone; write backbone:PRESET, for example backbone:efficientnet_lite0"
        )
    return spec
