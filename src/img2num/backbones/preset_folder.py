"""A keras-hub preset folder on disk: where img2num keeps the ones it writes, whether a folder is
one, and what its files say (normalisation, img2num's record) and weigh (the fingerprint)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

# Where img2num keeps the presets it writes: IMG2NUM_PRESETS, else img2num/presets in the user's
# cache folder (XDG_CACHE_HOME, default ~/.cache), beside the JAX cache (img2num.backends).
PRESETS_VARIABLE = "IMG2NUM_PRESETS"
# img2num's own record in a preset folder it wrote: normalisation, stages, smallest side.
INFO_FILE = "img2num_backbone.json"
_WEIGHT_FILES = ("model.weights.h5", "model.safetensors")


def backbone_presets_dir() -> Path:
    """The folder of img2num's written presets: IMG2NUM_PRESETS when set, else
    `img2num/presets` in the user's cache folder (XDG_CACHE_HOME, default ~/.cache)."""
    value = os.environ.get(PRESETS_VARIABLE)
    if value:
        return Path(value).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "img2num" / "presets"


def __getattr__(name: str):
    # BACKBONE_PRESETS_DIR follows IMG2NUM_PRESETS at each access (tests and users may set it late).
    if name == "BACKBONE_PRESETS_DIR":
        return backbone_presets_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_preset(folder: Path) -> bool:
    """Whether `folder` holds a loadable preset: a config.json and weights."""
    if not (folder / "config.json").is_file():
        return False
    return any((folder / name).is_file() for name in _WEIGHT_FILES) or any(folder.glob("model_*.weights.h5"))


def read_json(path: Path):
    """The JSON value in `path`; None when the file is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def normalisation(folder: Path, config: dict) -> tuple[object, object]:
    """Scale and offset from a preset's image_converter.json (Keras presets) or its timm
    pretrained_cfg; (1/255, 0) when the preset states none."""
    converter = read_json(folder / "image_converter.json")
    if isinstance(converter, dict):
        settings = converter.get("config", {})
        scale, offset = settings.get("scale"), settings.get("offset")
        return (1.0 if scale is None else scale), (0.0 if offset is None else offset)
    pretrained = config.get("pretrained_cfg") if isinstance(config, dict) else None
    if isinstance(pretrained, dict) and "mean" in pretrained and "std" in pretrained:
        mean, std = pretrained["mean"], pretrained["std"]
        return [1.0 / 255.0 / s for s in std], [-m / s for m, s in zip(mean, std)]
    return 1.0 / 255.0, 0.0


def three(values) -> tuple[float, ...]:
    """Per-channel floats: one value repeated for the three channels, else the values as given."""
    values = [float(v) for v in np.ravel(values)]
    return tuple(values * 3) if len(values) == 1 else tuple(values)


def fingerprint(folder: Path) -> str:
    """sha256 (16 hex digits) of a preset's configuration, normalisation and weight values.

    Keras' .h5 weight files are hashed by their arrays, not their bytes, so that writing the
    same weights again gives the same fingerprint."""
    digest = hashlib.sha256()
    for name in ("config.json", "image_converter.json"):
        if (folder / name).is_file():
            digest.update(name.encode())
            digest.update(_canonical_config(folder / name))
    weights = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.safetensors"))
    for path in weights:
        digest.update(path.name.encode())
        if path.suffix == ".h5":
            _hash_h5(path, digest)
        else:
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def hash_text(text: str) -> str:
    """sha256 (16 hex digits) of a text: the fingerprint of a hub preset, by its handle."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical_config(path: Path) -> bytes:
    """A config file's bytes without the object's own name, which Keras numbers per process
    (efficient_net_backbone_2): the same network saved twice keeps its fingerprint."""
    config = read_json(path)
    if not isinstance(config, dict):
        return path.read_bytes()
    if isinstance(config.get("config"), dict):
        config = {**config, "config": {k: v for k, v in config["config"].items() if k != "name"}}
    return json.dumps(config, sort_keys=True).encode()


def _hash_h5(path: Path, digest) -> None:
    import h5py

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(item[()]).tobytes())

    with h5py.File(path, "r") as file:
        file.visititems(visit)
