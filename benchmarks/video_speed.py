"""Frames per second: frames sampled from a video (label CSV rows naming `clip.mp4#t=S`, and
`predict --every`'s sequential reader) against the same frames saved as PNG files, side by side
in one run (issue 22).

Writes a synthetic H.264 video (moving texture, --fps frames a second, a keyframe every
--keyframe seconds) of --seconds seconds at --size x --size, samples one frame every --every
seconds, saves those frames as PNG files, then times, --repeats times each and alternating:
  - video rows: `decode_files` on the frame references (each video opened once per chunk of
    rows, read forward, seeking on long jumps), on --workers processes;
  - png files: `decode_files` on the PNG files, on --workers processes;
  - reader: one `FrameReader` in this process, frame after frame, as `predict --every` reads.
Prints the medians in frames per second, the CPU count and the load average.

    .venv/bin/python benchmarks/video_speed.py [--seconds 600] [--size 256] [--every 1] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def write_video(path: Path, seconds: float, fps: int, size: int, keyframe: float) -> None:
    """A video of smooth noise drifting across the frame, so that frames differ as footage does."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(max(1, int(keyframe * fps))), "preset": "veryfast"}
        for index in range(int(seconds * fps)):
            shift = index % size
            pixels = np.ascontiguousarray(texture[shift : shift + size, shift : shift + size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def timed(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="video length (default %(default)s)")
    parser.add_argument("--fps", type=int, default=25, help="video frame rate (default %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default %(default)s)")
    parser.add_argument("--keyframe", type=float, default=10.0, help="seconds between keyframes (default %(default)s)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between sampled frames (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timings of each kind (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (default %(default)s)")
    args = parser.parse_args()

    from PIL import Image

    from img2num.data.decoding import decode_files
    from img2num.data.conforming import ImageSpec
    from img2num.data.video import FrameReader, frame_ref, sample_times

    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        video = folder / "clip.mp4"
        write_video(video, args.seconds, args.fps, args.size, args.keyframe)
        times = list(sample_times(0.0, args.seconds, args.every))
        refs = [frame_ref(str(video), t) for t in times]
        spec = ImageSpec((args.size, args.size), 3)
        pngs = []
        for index, (array, problem, _) in enumerate(decode_files(refs, spec, workers=1)):
            assert problem is None, problem
            pngs.append(str(folder / f"{index:06d}.png"))
            Image.fromarray(array).save(pngs[-1])

        def reader() -> None:
            with FrameReader(video) as frames:
                for t in times:
                    frames.frame_at(t)

        kinds = {
            "video rows": lambda: decode_files(refs, spec, workers=args.workers),
            "png files": lambda: decode_files(pngs, spec, workers=args.workers),
            "reader (predict --every)": reader,
        }
        seconds = {name: [] for name in kinds}
        for _ in range(args.repeats):
            for name, function in kinds.items():
                seconds[name].append(timed(function))
        print(f"{len(times)} frames of {args.size}x{args.size}, one every {args.every:g} s of a {args.seconds:g} s "
              f"{args.fps} fps video (keyframe every {args.keyframe:g} s), {args.workers} worker(s), "
              f"median of {args.repeats}:")
        for name, values in seconds.items():
            median = statistics.median(values)
            print(f"  {name:26s} {len(times) / median:10.1f} frames/s  ({median:.3f} s)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
