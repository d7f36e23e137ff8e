"""Requests/s, images/s and latency of `img2num serve`, beside `img2num predict` on the same files.

Writes the points task as 16x16 PNG files, trains a small run on them (or takes --run), starts
`img2num serve RUN --port 0` as its own process on 127.0.0.1, and sends a fixed number of
requests from --clients concurrent clients, each on its own keep-alive connection:
  - single: one image per request: requests/s and p50/p95/p99 latency;
  - batch: --per-request images per request: images/s.
Every answer is checked against `img2num predict` (all 200, same predictions), so a lost or
mixed-up request shows. Beside the figures: the images/s of `img2num predict` on the same files,
as `predict_files` in a process that has loaded the run (its batch throughput; decoding in one
process and on every core, the faster compared), and the whole command's wall time with
start-up. The server and the clients share the machine's cores.

    .venv/bin/python benchmarks/serve.py [--requests 400] [--clients 4] [--per-request 64]
        [--run RUN] [--model mlp] [--batch-wait-ms 2] [--max-batch 64]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TIMEOUT = 30


def make_run(folder: Path, model: str, images: int) -> tuple[Path, list[Path]]:
    """Points 16x16 PNG files and a run trained on them for a few epochs."""
    from img2num.config import PointsConfig, TrainConfig
    from img2num.data import generate_points_splits, write_image_folder
    from img2num.training import train

    config = PointsConfig(height=16, width=16, train=512, val=128, test=images, seed=0)
    paths = write_image_folder(folder / "data", generate_points_splits(config))
    run = train(paths["labels"], TrainConfig(model=model, epochs=3, seed=0), run_dir=folder / "run", quiet=True)
    return run.path, sorted((folder / "data" / "images" / "test").glob("*.png"))


def start_server(run: Path, args) -> tuple[subprocess.Popen, str, str]:
    command = [
        sys.executable, "-m", "img2num", "serve", str(run), "--port", "0",
        "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms),
        "--max-images", str(max(args.per_request, 1)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if " at http://" not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()}")
    host_port = line.split(" at http://")[1].strip().rstrip("/")
    return process, host_port.rsplit(":", 1)[0], host_port.rsplit(":", 1)[1]


def load(host: str, port: str, bodies: list[tuple[bytes, str]], clients: int) -> tuple[float, list[float], list[dict]]:
    """Send each body once from `clients` threads; (wall seconds, latencies in s, answers in order)."""
    latencies = [0.0] * len(bodies)
    answers: list[dict] = [{}] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def client():
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            body, content_type = bodies[index]
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": content_type})
            response = connection.getresponse()
            text = response.read()
            latencies[index] = time.perf_counter() - started
            answers[index] = {"status": response.status, **json.loads(text)}
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return time.perf_counter() - started, latencies, answers


def check(answers: list[dict], names: list[list[str]], expected: dict[str, float]) -> int:
    """Answers that are missing, refused or wrong (the first few are printed)."""
    bad = 0
    for answer, files in zip(answers, names):
        results = answer.get("results", [])
        good = answer.get("status") == 200 and [item.get("file") for item in results] == files
        good = good and np.allclose([item["prediction"] for item in results], [expected[name] for name in files], rtol=1e-5, atol=1e-5)
        if not good and bad < 3:
            print(f"failed: {files[:3]} -> {str(answer)[:300]}", file=sys.stderr)
        bad += not good
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="single-image requests (default %(default)s)")
    parser.add_argument("--batch-requests", type=int, default=40, help="many-image requests (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default %(default)s)")
    parser.add_argument("--per-request", type=int, default=64, help="images per many-image request (default %(default)s)")
    parser.add_argument("--images", type=int, default=512, help="distinct test images (default %(default)s)")
    parser.add_argument("--run", type=Path, help="a run trained on 16x16 images (default: train an MLP here)")
    parser.add_argument("--model", default="mlp", help="model of the run trained here (default %(default)s)")
    parser.add_argument("--max-batch", type=int, default=64, help="server's --max-batch (default %(default)s)")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="server's --batch-wait-ms (default %(default)s)")
    args = parser.parse_args()

    from img2num.bundle import load_run
    from img2num.prediction import predict_files

    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            print(f"training a {args.model} on the points task (16x16 PNG files)...", flush=True)
            run_path, files = make_run(Path(tmp), args.model, args.images)
        else:
            run_path = args.run
            files = make_run_files(Path(tmp), args.images)
        run = load_run(run_path)
        done, predictions, _ = predict_files(run, files)  # warm: compiles every shape used
        expected = dict(zip([Path(path).name for path in done], predictions.tolist()))
        rates = {}
        for workers in (1, None):  # decoding in this process, and on every core as the command does
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                predict_files(run, files, workers=workers)
                seconds.append(time.perf_counter() - started)
            rates[workers] = len(files) / min(seconds)
        batch_rate = max(rates.values())
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "img2num", "predict", str(run_path), *map(str, files)],
                       check=True, capture_output=True, timeout=600)
        command_rate = len(files) / (time.perf_counter() - started)

        data = {path.name: path.read_bytes() for path in files}
        names = list(data)
        process, host, port = start_server(run_path, args)
        try:
            from img2num.serve import multipart_body

            rng = np.random.default_rng(0)
            single = [[names[i]] for i in rng.integers(0, len(names), args.requests)]
            many = [[names[(k * args.per_request + j) % len(names)] for j in range(args.per_request)] for k in range(args.batch_requests)]
            warm = [multipart_body([(n, data[n]) for n in group]) for group in single[: 4 * args.clients]]
            load(host, port, warm, args.clients)
            rows = []
            for label, groups in (("single", single), ("batch", many)):
                bodies = [multipart_body([(name, data[name]) for name in group]) for group in groups]
                wall, latencies, answers = load(host, port, bodies, args.clients)
                lost = check(answers, groups, expected)
                ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
                images = sum(len(group) for group in groups)
                rows.append((label, len(groups), len(groups[0]), len(groups) / wall, images / wall, *ms, lost))
            health = json.loads(_get(host, port, "/health"))
        finally:
            process.terminate()
            process.wait(TIMEOUT)

    print(f"\nrun {run.model_name} on 16x16 images; {args.clients} concurrent clients on 127.0.0.1; {os.cpu_count()} CPU cores "
          f"shared by server and clients; --max-batch {args.max_batch} --batch-wait-ms {args.batch_wait_ms:g}")
    print(f"{'requests':<10}{'count':>7}{'img/req':>8}{'req/s':>9}{'img/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'failed':>8}")
    for label, count, per, rate, images, p50, p95, p99, lost in rows:
        print(f"{label:<10}{count:>7}{per:>8}{rate:>9.0f}{images:>9.0f}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}{lost:>8}")
    print(f"model calls {health['model_calls']} for {health['images']} images served (mean batch {health['images'] / max(health['model_calls'], 1):.1f})")
    print(f"img2num predict on the same {len(files)} files with the run loaded (predict_files, best of 5): "
          f"{rates[1]:.0f} images/s decoding in one process, {rates[None]:.0f} on every core as the command does; "
          f"{command_rate:.0f} images/s as a whole command with start-up")
    print(f"served batch images/s over predict's faster figure: {rows[1][4] / batch_rate:.2f}x")


def make_run_files(folder: Path, images: int) -> list[Path]:
    from img2num.config import PointsConfig
    from img2num.data import generate_points_splits, write_image_folder

    config = PointsConfig(height=16, width=16, train=0, val=0, test=images, seed=1)
    write_image_folder(folder / "data", generate_points_splits(config))
    return sorted((folder / "data" / "images" / "test").glob("*.png"))


def _get(host: str, port: str, path: str) -> bytes:
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


if __name__ == "__main__":
    main()
