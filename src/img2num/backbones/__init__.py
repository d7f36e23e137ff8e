"""Pretrained backbones from keras-hub as img2num models: `backbone:PRESET` (a head on the frozen
backbone's features) and `finetune:PRESET` (the backbone's last stages trained too). PRESET is a
keras-hub preset name, an hf:// or kaggle:// handle, a local preset folder, or
`efficientnet_lite0`, which img2num writes offline from its weights package; docs/backbones.md.

Importing this package makes the offline EfficientNet-Lite0 a candidate of `--model auto`.
"""

from __future__ import annotations

from img2num.registry import register_candidate

# Images with a shorter side below this do not try the pretrained backbone: a five-stage network
# has nothing left of them at its last stage.
BACKBONE_MIN_SIDE = 32


def _offline(spec: str) -> bool:
    """Whether the backbone can be had without a network (a candidate never downloads)."""
    from img2num.backbones.presets import available_offline

    return available_offline(spec)


register_candidate(
    "backbone:efficientnet_lite0",
    "photographs: what an ImageNet network sees, at several depths, with a head fitted on it",
    rank=2,
    applies=lambda shape: min(shape[:2]) >= BACKBONE_MIN_SIDE and _offline("efficientnet_lite0"),
)
