"""Writing a keras-hub preset folder: the check of its target, the save (backbone, ImageConverter,
img2num's record) to a temporary folder beside it, and the rename into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from img2num.backbones.architecture import architecture_facts
from img2num.backbones.preset_folder import INFO_FILE, is_preset, three
from img2num.errors import Img2NumError


def check_target(folder: Path, overwrite: bool) -> None:
    """Refuse to write a preset over a file, or over a folder with files unless `overwrite`.

    Raises:
        Img2NumError: `folder` is a file, or a folder that is not empty and `overwrite` is False.
    """
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"cannot write a preset to {str(folder)!r}: it is a file")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise Img2NumError(f"preset folder {str(folder)!r} exists and is not empty (overwrite=True replaces it)")


def save_preset(backbone, folder: Path, scale, offset, image_size, overwrite: bool, source: str) -> Path:
    """Save backbone, ImageConverter and img2num's record to a temporary folder beside `folder`,
    then rename it into place. Another process that wrote the same preset first wins.

    Args:
        backbone: A built `keras_hub.models.Backbone` with its weights.
        folder: The preset folder to write.
        scale: The normalisation's factor(s): model input = pixels (0-255) * scale + offset.
        offset: The normalisation's offset(s).
        image_size: The ImageConverter's (height, width).
        overwrite: Replace a folder that is there already.
        source: What the preset was written from, kept in img2num's record.

    Returns:
        `folder`.
    """
    import keras_hub

    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        backbone.save_to_preset(str(temp))
        converter = keras_hub.layers.EfficientNetImageConverter(
            image_size=image_size, scale=three(scale), offset=three(offset), name=f"{backbone.name}_converter"
        )
        converter.save_to_preset(str(temp))
        stages, min_size = architecture_facts(backbone)
        record = {
            "source": source,
            "scale": list(three(scale)),
            "offset": list(three(offset)),
            "min_size": min_size,
            "stages": list(stages),
        }
        (temp / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(temp, folder, overwrite)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return folder


def _move_into_place(temp: Path, folder: Path, overwrite: bool) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if folder.exists() and overwrite:
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        folder.rename(old)
        temp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        temp.rename(folder)
    except OSError:
        if not is_preset(folder):
            raise
