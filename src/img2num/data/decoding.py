"""Decoding many image files at once: in this process for a few, on a pool of forked worker
processes for many. Each file is read and conformed by `img2num.data.images`; video frame
references (`clip.mp4#t=12.5`) by `img2num.data.video`, grouped by video in time order."""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from img2num.data.conforming import BadImage, ImageInfo, ImageSpec, conform

from img2num.data.images import probe, read_image
from img2num.data.video import probe_frame_refs, read_frame_refs, video_order_key

# Fewer files than this are decoded in this process: starting workers would cost more.
PARALLEL_MIN_FILES = 256
_CHUNK = 32


def decode_files(
    paths: list[str],
    spec: ImageSpec,
    *,
    keep_pixels: bool = True,
    band_stats: bool = False,
    workers: int | None = None,
    max_pixels: int | None = None,
) -> list[tuple[np.ndarray | None, str | None, tuple | None]]:
    """Decode and conform many files, on `workers` processes when there are enough of them.

    Args:
        paths: Image files.
        spec: Shape and type every image is brought to.
        keep_pixels: Return the arrays; False only checks that every file decodes.
        band_stats: Return each image's per-band sum, sum of squares and pixel count.
        workers: Processes; None uses every CPU core.
        max_pixels: Pillow's pixel limit (default: `PIL.Image.MAX_IMAGE_PIXELS` here).

    Returns:
        For each path in order: (array or None, problem or None, band statistics or None).
    """
    if max_pixels is None:
        max_pixels = Image.MAX_IMAGE_PIXELS
    return _map_chunks(decode_chunk, paths, (spec, keep_pixels, band_stats, max_pixels), workers)


def probe_files(
    paths: list[str], workers: int | None = None, max_pixels: int | None = None
) -> list[tuple[ImageInfo | None, str | None]]:
    """`probe` many files, on `workers` processes when there are enough of them.

    Returns:
        For each path in order: (its `ImageInfo` or None, problem or None).
    """
    if max_pixels is None:
        max_pixels = Image.MAX_IMAGE_PIXELS
    return _map_chunks(probe_chunk, paths, (max_pixels,), workers)


def probe_chunk(paths: list[str], max_pixels: int | None) -> list[tuple[ImageInfo | None, str | None]]:
    """Probe a list of files in this process; see `probe_files`."""
    frames, out = probe_frame_refs(paths), []
    for index, path in enumerate(paths):
        if index in frames:
            out.append(frames[index])
            continue
        try:
            out.append((probe(path, max_pixels), None))
        except BadImage as error:
            out.append((None, str(error)))
    return out


def _map_chunks(function, paths: list[str], args: tuple, workers: int | None) -> list:
    # Frames of one video go to one chunk in time order: its worker opens the video once.
    order = [index for index, _ in sorted(enumerate(paths), key=video_order_key)]
    if order != list(range(len(paths))):
        results = _map_chunks(function, [paths[index] for index in order], args, workers)
        out = [None] * len(paths)
        for place, index in enumerate(order):
            out[index] = results[place]
        return out
    chunks = [paths[start : start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(paths) < PARALLEL_MIN_FILES:
        results = [function(chunk, *args) for chunk in chunks]
    else:
        with process_pool(workers) as pool:
            results = list(pool.map(function, chunks, *[[a] * len(chunks) for a in args]))
    return [item for chunk in results for item in chunk]


def decode_chunk(
    paths: list[str], spec: ImageSpec, keep_pixels: bool, band_stats: bool, max_pixels: int | None
) -> list[tuple[np.ndarray | None, str | None, tuple | None]]:
    """Decode a list of files in this process; see `decode_files`."""
    frames, out = read_frame_refs(paths), []
    for index, path in enumerate(paths):
        try:
            if index in frames and frames[index][1] is not None:
                raise BadImage(frames[index][1])
            array = conform(frames[index][0] if index in frames else read_image(path, max_pixels, spec), spec)
        except BadImage as error:
            out.append((None, str(error), None))
            continue
        stats = None
        if band_stats:
            flat = array.reshape(-1, array.shape[-1]).astype(np.float64)
            stats = (flat.sum(axis=0), (flat**2).sum(axis=0), len(flat))
        out.append((array if keep_pixels else None, None, stats))
    return out


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of decoding processes.

    Forked, not spawned: spawning re-runs the user's main script in every worker, which breaks
    scripts without a `__main__` guard. The workers only run Pillow and NumPy, never JAX, so
    JAX's warning about forking a multithreaded process does not apply to them.
    """
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded, use of fork", category=DeprecationWarning)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_interrupts)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches every process of the terminal's group; only the main process should act on
    # it (one line, nothing left unfinished), not print a traceback from each worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
