"""How much memory the machine has, and the up-front check that images of a chosen size fit in
it (a batch and its decoding), so that a job is refused in one line instead of being killed."""

from __future__ import annotations

import os

from img2num.errors import Img2NumError

# A job may plan on this share of the machine's memory for its images: the rest is the model,
# the backend and everything else running.
USABLE_SHARE = 0.5


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_image_memory(
    image_size: tuple[int, int], channels: int, batch_size: int, workers: int, available: int | None = None
) -> None:
    """Refuse images of `image_size` when a batch of them, plus one image being decoded in each
    worker, would not fit in `USABLE_SHARE` of the machine's memory (as float32 pixels, the
    model's input and the resize's working type).

    Args:
        image_size: (height, width) every image is brought to.
        channels: Bands per image (3 when not known yet).
        batch_size: Images per training batch.
        workers: Decoding processes.
        available: Bytes of memory to plan on; None asks the machine.

    Raises:
        Img2NumError: The estimate exceeds what the machine has.
    """
    available = machine_memory() if available is None else available
    if available is None:
        return
    height, width = image_size
    image = height * width * channels * 4
    needed = image * (batch_size + workers)
    if needed > USABLE_SHARE * available:
        raise Img2NumError(
            f"image size {height}x{width}: a batch of {batch_size} such images and their decoding on {workers} "
            f"processes take about {_size_text(needed)} (float32 pixels, {channels} bands), more than half of this "
            f"machine's {_size_text(available)}; choose a smaller --image-size (or --batch-size)"
        )


def _size_text(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} PB"
