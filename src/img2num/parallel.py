"""Data-parallel training over one machine's devices: Keras' `DataParallel` on the JAX backend
(`TrainConfig.devices`, `train --devices N`); docs/scale.md."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from img2num.errors import Img2NumError

# The trainer that a data-parallel run uses: Keras' `fit`, which shards each batch over the
# devices; img2num's own compiled loop ("scan", "step") places arrays on one device.
PARALLEL_TRAINER = "fit"


def resolve_devices(requested: int | None, batch_size: int, trainer: str = "auto", sizes: dict[str, int] | None = None) -> int:
    """How many devices a model trains on.

    Every batch, the last of each split too, must divide by the device count: Keras shards an
    epoch's batches by the layout of its first, so a last batch of 23 images on 2 devices fails.

    Args:
        requested: Devices asked for; None takes every local accelerator (GPU, TPU) when there
            are several and every batch divides by their count, else 1.
        batch_size: Samples per step: each device takes an equal share.
        trainer: The trainer asked for (`TrainConfig.trainer`).
        sizes: Images per split ("training", "validation"), whose last batches must divide too.

    Returns:
        The device count; above 1, train within `data_parallel` with `PARALLEL_TRAINER`.

    Raises:
        Img2NumError: More than one device on a backend other than JAX, more devices than
            there are, a batch size or a split's last batch that does not divide by them, or a
            trainer other than auto or fit.
    """
    import keras

    sizes = sizes or {}
    if requested is None:
        if keras.backend.backend() != "jax":
            return 1
        import jax

        count = sum(device.platform != "cpu" for device in jax.local_devices())
        return count if count > 1 and _indivisible(count, batch_size, sizes) is None else 1
    if requested == 1:
        return 1
    if keras.backend.backend() != "jax":
        raise Img2NumError(f"--devices {requested} needs the JAX backend (Keras' DataParallel), not {keras.backend.backend()}; use --backend jax")
    import jax

    available = jax.local_devices()
    if requested > len(available):
        raise Img2NumError(f"--devices {requested}: this machine has {len(available)} {available[0].platform} device{'s' if len(available) != 1 else ''}")
    if batch_size % requested:
        raise Img2NumError(f"--devices {requested}: the batch size {batch_size} must divide by the device count, each device taking an equal share")
    problem = _indivisible(requested, batch_size, sizes)
    if problem:
        raise Img2NumError(f"--devices {requested}: {problem}, which does not divide by {requested}; choose a batch size that divides the split or drop a few images")
    if trainer not in ("auto", PARALLEL_TRAINER):
        raise Img2NumError(f"--devices {requested} trains with Keras' fit, which shards each batch; use --trainer auto or fit, not {trainer}")
    return requested


def _indivisible(devices: int, batch_size: int, sizes: dict[str, int]) -> str | None:
    """The first batch size or split's last batch that does not divide by `devices`, in words."""
    if batch_size % devices:
        return f"the batch size {batch_size}"
    for name, size in sizes.items():
        if size % batch_size % devices:
            return f"the {name} split's last batch of {size % batch_size} images ({size} images in batches of {batch_size})"
    return None


@contextlib.contextmanager
def data_parallel(devices: int) -> Iterator[None]:
    """Within the block, models built and trained use `devices` local devices, each batch split
    evenly among them and the weights replicated (Keras' `DataParallel`); 1 changes nothing."""
    if devices == 1:
        yield
        return
    import jax
    import keras

    with keras.distribution.DataParallel(devices=jax.local_devices()[:devices]).scope():
        yield
