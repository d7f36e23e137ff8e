"""What hostile uploads cost `img2num serve`: the time and memory to refuse a small TIFF of many
pages, and how slow `/health` gets while clients upload large-pixel PNGs (issue 23, item 5).

Trains a small run (points, 16x16 PNG files, read with `--image-size 16x16 --resize stretch`,
so that it takes images of any size and a hostile file must be refused for its pages or pixels),
then for each source tree given (--src, default
this checkout's) starts `img2num serve` on 127.0.0.1 in its own process with that tree first on
PYTHONPATH, so that two versions compare side by side in one run:
  - tiff: one upload of a zlib-compressed TIFF of --pages grey pages of --page-side pixels a
    side (nearly constant, so the file is small and its pages large); the answer's status and
    seconds, and the server's peak resident memory before and after (VmHWM);
  - pngs: --clients clients each upload a --side x --side grey PNG (a few tens of KB) --rounds
    times while one client asks `/health` every 50 ms; `/health`'s median and largest latency,
    beside its median with no uploads.

    .venv/bin/python benchmarks/serve_intake.py [--src src OLD/src] [--pages 200] [--side 4900]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


TIMEOUT = 120


def make_run(folder: Path) -> Path:
    """Points 16x16 PNG files and an `mlp` run on them that stretches any image to 16x16."""
    from img2num.config import DataConfig, PointsConfig, TrainConfig
    from img2num.data import generate_points_splits, write_image_folder
    from img2num.training import train

    paths = write_image_folder(folder / "data", generate_points_splits(PointsConfig(train=256, val=64, test=16, seed=0)))
    options = DataConfig(image_size=(16, 16), resize="stretch")
    return train(paths["labels"], TrainConfig(model="mlp", epochs=2), data_options=options, run_dir=folder / "run", quiet=True).path


def start(run: Path, src: Path) -> tuple[subprocess.Popen, str]:
    """`img2num serve RUN --port 0` with `src` first on PYTHONPATH; its process and host:port."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    command = [sys.executable, "-m", "img2num", "serve", str(run), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if " at http://" not in line:
        process.kill()
        raise SystemExit(f"the server from {src} did not start: {line}{process.stderr.read()}")
    return process, line.split(" at http://")[1].strip().rstrip("/")


def request(address: str, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    began = time.perf_counter()
    headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    status = connection.getresponse()
    status.read()
    connection.close()
    return status.status, time.perf_counter() - began


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def many_pages_tiff(pages: int, side: int) -> bytes:
    import tifffile

    buffer = io.BytesIO()  # one series of `pages` pages, which reads as that many bands
    tifffile.imwrite(buffer, np.full((pages, side, side), 100, np.uint8), compression="zlib")
    return buffer.getvalue()


def large_png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def health_under_uploads(address: str, png: bytes, clients: int, rounds: int) -> tuple[list[float], list[int]]:
    """`/health` latencies while `clients` threads upload `png` `rounds` times each."""
    latencies, statuses, done = [], [], threading.Event()

    def poll() -> None:
        while not done.is_set():
            latencies.append(request(address, "GET", "/health")[1])
            time.sleep(0.05)

    def upload() -> None:
        for _ in range(rounds):
            statuses.append(request(address, "POST", "/predict", png)[0])

    poller = threading.Thread(target=poll)
    poller.start()
    workers = [threading.Thread(target=upload) for _ in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    poller.join()
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, nargs="+", default=[Path(__file__).resolve().parents[1] / "src"])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--page-side", type=int, default=1000)
    parser.add_argument("--side", type=int, default=4900)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tiff, png = many_pages_tiff(args.pages, args.page_side), large_png(args.side)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; "
          f"TIFF {len(tiff) / 1e6:.2f} MB ({args.pages} pages of {args.page_side}x{args.page_side}); PNG {len(png) / 1e3:.0f} KB ({args.side}x{args.side})")
    with tempfile.TemporaryDirectory() as folder:
        run = make_run(Path(folder))
        print("| source | TIFF: status | TIFF: seconds | peak MB before / after | /health idle p50 ms | /health under uploads p50 / max ms | upload statuses |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for src in args.src:
            process, address = start(run, src)
            try:
                idle = sorted(request(address, "GET", "/health")[1] for _ in range(20))
                before = peak_memory_mb(process.pid)
                status, seconds = request(address, "POST", "/predict", tiff)
                after = peak_memory_mb(process.pid)
                latencies, statuses = health_under_uploads(address, png, args.clients, args.rounds)
                latencies.sort()
                print(
                    f"| {src} | {status} | {seconds:.2f} | {before:.0f} / {after:.0f} | {1000 * idle[len(idle) // 2]:.1f} "
                    f"| {1000 * latencies[len(latencies) // 2]:.1f} / {1000 * latencies[-1]:.0f} "
                    f"| {', '.join(f'{s}: {statuses.count(s)}' for s in sorted(set(statuses)))} |",
                    flush=True,
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
