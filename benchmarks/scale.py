"""The single-machine figures that docs/scale.md multiplies out: images/s per core for decoding,
Keras prediction and ONNX Runtime prediction of `cnn_gap`, and Ray Data's cost per batch.

Each figure runs on one thread (XLA and ONNX Runtime told so before they start), `--repeats`
times; the median is printed, with the load average before and after (the machine is shared).

    .venv/bin/python benchmarks/scale.py                                  # docs/scale.md's table
    .venv/bin/python benchmarks/scale.py --images 64 --repeats 2 --ray-batches 4   # a quick check
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

# One thread per engine, so each figure is per core; set before JAX starts.
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 " + os.environ.get("XLA_FLAGS", "")
os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def median_rate(count: int, repeats: int, work) -> float:
    """Median items per second of `work()` handling `count` items, after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return count / statistics.median(times)


def decode_rate(folder: Path, images: np.ndarray, repeats: int) -> float:
    """PNG files decoded and conformed per second on one process (`decode_files`, workers=1)."""
    from PIL import Image

    from img2num.data.decoding import decode_files
    from img2num.data.conforming import ImageSpec

    paths = []
    for index, image in enumerate(images):
        paths.append(str(folder / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    spec = ImageSpec(images.shape[1:3], images.shape[3], "uint8", "stretch")
    return median_rate(len(paths), repeats, lambda: decode_files(paths, spec, workers=1))


def keras_rate(model, x: np.ndarray, repeats: int) -> float:
    """Images per second of img2num's Keras prediction path (`inference.predict_inputs`)."""
    from img2num.inference import predict_inputs

    return median_rate(len(x), repeats, lambda: predict_inputs(model, x))


def onnx_rate(model, x: np.ndarray, repeats: int, folder: Path) -> tuple[float | None, str]:
    """Images per second of a plain ONNX Runtime session (one thread) on Keras' own ONNX export
    of `model`, and how far its outputs are from Keras'; None and the reason when it cannot run."""
    try:
        import onnxruntime
    except ImportError:
        return None, "onnxruntime is not installed (pip install 'img2num[onnx]')"
    path = folder / "model.onnx"
    model(x[:1])  # Keras exports only a model that has been called
    try:
        model.export(str(path), format="onnx", verbose=False)
    except Exception as error:  # the exporters raise many types
        return None, f"Keras' ONNX export failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = 256

    def work():
        return np.concatenate([session.run(None, {name: x[start : start + batch]})[0] for start in range(0, len(x), batch)])

    difference = float(np.max(np.abs(work() - np.asarray(model.predict(x, verbose=0)))))
    return median_rate(len(x), repeats, work), f"max |ORT - Keras| = {difference:.2e}"


def ray_overhead(batches: int, batch_size: int, repeats: int) -> tuple[float, float, float] | None:
    """Ray Data's cost for a do-nothing actor (2 CPUs, one actor): milliseconds per batch (the
    median time of 2 x `batches` less that of `batches`, over `batches`), the seconds each
    execution costs besides (planning, scheduling), and the first execution's seconds (actor
    start-up and Ray's imports included)."""
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().print_on_execution_start = False
        sizes = {count: ray.data.from_numpy(np.zeros((count * batch_size, 8), np.float32)).materialize() for count in (batches, 2 * batches)}

        class Same:
            def __call__(self, batch):
                return batch

        def run(count):
            started = time.perf_counter()
            out = sizes[count].map_batches(Same, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
            for _ in out.iter_batches(batch_size=None):
                pass
            return time.perf_counter() - started

        first = run(batches)
        single = statistics.median(run(batches) for _ in range(repeats))
        double = statistics.median(run(2 * batches) for _ in range(repeats))
        per_batch = (double - single) / batches
        return 1000 * per_batch, single - per_batch * batches, first
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="images per measurement (default %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels, RGB (default %(default)s)")
    parser.add_argument("--model", default="cnn_gap", help="registered model predicted with (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default %(default)s)")
    parser.add_argument("--ray-batches", type=int, default=64, help="batches through Ray per repeat (default %(default)s)")
    parser.add_argument("--ray-batch-size", type=int, default=256, help="rows per Ray batch (default %(default)s)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}; {os.cpu_count()} CPU cores")

    from img2num.models import create_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    x = images.astype(np.float32) / 255
    model = create_model(args.model, (args.size, args.size, 3))
    with tempfile.TemporaryDirectory() as folder:
        decode = decode_rate(Path(folder), images, args.repeats)
        print(f"decode PNG {args.size}x{args.size} RGB: {decode:,.0f} images/s per core")
        keras_images = keras_rate(model, x, args.repeats)
        print(f"Keras (JAX) predict {args.model}: {keras_images:,.0f} images/s per core")
        ort, note = onnx_rate(model, x, args.repeats, Path(folder))
        print(f"ONNX Runtime predict {args.model}: " + (f"{ort:,.0f} images/s per core ({note})" if ort else note))
    overhead = ray_overhead(args.ray_batches, args.ray_batch_size, args.repeats)
    if overhead is None:
        print("Ray: not installed (pip install 'img2num[ray]')")
    else:
        print(f"Ray Data overhead: {overhead[0]:.1f} ms per batch of {args.ray_batch_size} rows "
              f"({overhead[0] * 1000 / args.ray_batch_size:.1f} us per row), {overhead[1]:.1f} s per execution; "
              f"first execution, actor start-up included, {overhead[2]:.1f} s")
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
