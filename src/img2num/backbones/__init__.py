"""Pretrained backbones from keras-hub presets (docs/backbones.md)."""
