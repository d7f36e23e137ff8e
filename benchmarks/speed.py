"""Training and prediction speed: img2num's trainer beside plain Keras `model.fit`, per backend.

For each workload (model, image shape, samples), round after round, and in each round for each
installed Keras backend in turn, one worker process trains fresh copies of the model with plain
`model.fit(x, y, batch_size=32, shuffle=True, validation_data=...)` and with img2num's trainer
(on JAX its compiled loop, `img2num.loop`; on PyTorch `fit` on a channels-first copy of
convolutional models, `img2num.layout`; else `fit` fed by img2num's batches), the pair's order
alternating with the round, and on the tutorial's models on JAX a hand-written JAX loop, the
floor. The last round's worker also times prediction, Keras' `model.predict` against img2num's
(`Run.predict`'s path). It prints seconds per epoch (median over the epochs after each
run's first, which compiles), the per-pair ratio, images per second, peak memory, and which
backend `--backend auto` picks beside the fastest one measured.

    .venv/bin/python benchmarks/speed.py                  # JAX and PyTorch
    .venv/bin/python benchmarks/speed.py --quick          # fewer rounds and epochs
    .venv/bin/python benchmarks/speed.py --only mlp16,cnn16 --backends jax
    # TensorFlow, the tutorial's own stack, joins when installed: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    key: str
    model: str
    shape: tuple[int, int, int]
    train: int
    val: int
    epochs: int
    # A/B rounds: many for the tutorial-size workloads, whose short epochs the machine's drift
    # moves by up to 20% between runs (2-3 rounds gave 1.31-1.35x for the MLP, 8 gave 1.55-1.61x).
    rounds: int = 2

    @property
    def label(self) -> str:
        return f"{self.model} {'x'.join(map(str, self.shape))}, {self.train} images"


WORKLOADS = [
    # The tutorial's two models on its data size.
    Workload("mlp16", "mlp", (16, 16, 1), 1500, 300, 8, rounds=8),
    Workload("cnn16", "cnn", (16, 16, 1), 1500, 300, 6, rounds=8),
    # The default model and the convolutional ones on photo-like RGB images.
    Workload("pixel_gap64", "pixel_gap", (64, 64, 3), 512, 128, 4),
    Workload("cnn_gap32", "cnn_gap", (32, 32, 1), 1200, 240, 3),
    Workload("cnn_gap64", "cnn_gap", (64, 64, 3), 512, 128, 3),
    Workload("resnet32", "resnet", (32, 32, 1), 1200, 240, 3),
    Workload("resnet64", "resnet", (64, 64, 3), 512, 128, 3),
    # The tutorial's CNN at the sizes users have, for its backend rule (`ModelSpec.torch_from_pixels`).
    Workload("cnn32", "cnn", (32, 32, 1), 1200, 240, 3),
    Workload("cnn64", "cnn", (64, 64, 3), 512, 128, 3),
    Workload("cnn128", "cnn", (128, 128, 3), 256, 64, 3),
]
BACKENDS = ("jax", "torch", "tensorflow")
BATCH_SIZE = 32
PREDICT_IMAGES = 2048


def worker(key: str, number: int, epochs_scale: float, last: bool) -> dict:
    """Runs in a process whose KERAS_BACKEND is set: A/B round `number` of one workload (the
    order of the pair alternates with the round) and the floor, and after the last round the
    prediction and matrix-product speeds. Returns the raw times; `main` pools the rounds."""
    import resource

    import keras
    import numpy as np

    from img2num.inference import predict_inputs
    from img2num.preprocessing import Preprocessing
    from img2num.config import PREDICT_BATCH_SIZE, TrainConfig
    from img2num.data import Dataset
    from img2num.fitting import build_model, choose_trainer, run_epochs

    workload = next(w for w in WORKLOADS if w.key == key)
    epochs = max(2, round(workload.epochs * epochs_scale))
    rng = np.random.default_rng(0)

    def images(count):
        x = rng.integers(0, 256, (count, *workload.shape), dtype=np.uint8)
        return Dataset(x, x.reshape(count, -1).mean(axis=1).astype(np.float32), "random")

    train, val = images(workload.train), images(workload.val)
    preprocessing = Preprocessing.for_data(train)
    x, vx = preprocessing.apply(train.x), preprocessing.apply(val.x)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._started)

    def fresh():
        keras.utils.set_random_seed(0)
        return build_model(TrainConfig(model=workload.model), workload.shape)

    trainer = choose_trainer("auto", fresh(), {"train": train})

    def run(kind):
        model, timer = fresh(), EpochTimer()
        if kind == "fit":
            model.fit(
                x, train.y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True,
                validation_data=(vx, val.y), verbose=0, callbacks=[timer],
            )
        else:
            run_epochs(model, trainer, train, val, preprocessing, batch_size=BATCH_SIZE, epochs=epochs, seed=0, callbacks=[timer])
        return model, timer.seconds

    seconds, first = {}, {}
    for kind in ("fit", "img2num") if number % 2 == 0 else ("img2num", "fit"):
        model, times = run(kind)
        first[kind], seconds[kind] = times[:1], times[1:]
    result = {"trainer": trainer, "epoch_seconds": seconds, "first_epoch_seconds": first}
    if keras.backend.backend() == "jax" and workload.key in ("mlp16", "cnn16"):
        # Every round, beside the pair, so that the floor drifts with them.
        result["bare_jax_epoch_seconds"] = bare_jax_epoch_seconds(workload.model, x, train.y, 2 * epochs)
    if not last:
        return result

    probe = rng.random((PREDICT_IMAGES, *workload.shape)).astype(np.float32)
    ours = lambda: predict_inputs(model, probe)  # noqa: E731
    theirs = lambda: model.predict(probe, batch_size=PREDICT_BATCH_SIZE, verbose=0)  # noqa: E731
    rates = {"fit": [], "img2num": []}
    for function in (ours, theirs):
        function()
    for _ in range(3):
        for kind, function in (("fit", theirs), ("img2num", ours)):
            started = time.perf_counter()
            function()
            rates[kind].append(PREDICT_IMAGES / (time.perf_counter() - started))
    if keras.backend.backend() == "jax" and workload.model == "mlp":
        result["gemm_gflops"] = gemm_gflops()
    return result | {
        "images_per_second": {kind: statistics.median(values) for kind, values in rates.items()},
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bare_jax_epoch_seconds(model: str, x, y, epochs: int) -> float:
    """Seconds per epoch (median after the first) of a hand-written JAX loop on the tutorial
    model's layer shapes: plain SGD, no Keras, no metrics, no validation. It is the matrix
    products and convolutions of an epoch and little else, run the way img2num's loop runs them
    (the MLP's epoch as one compiled scan, the CNN one compiled call per batch): the floor that
    XLA on this CPU sets for the loop."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 4))

    def dense(inputs, outputs):
        return jax.random.normal(next(keys), (inputs, outputs)) * (2 / inputs) ** 0.5, jnp.zeros(outputs)

    def pool(h):
        n, height, width, c = h.shape
        return h[:, : height // 2 * 2, : width // 2 * 2].reshape(n, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))

    if model == "mlp":
        params = [dense(x[0].size, 256), dense(256, 256), dense(256, 256), dense(256, 1)]

        def forward(params, images):
            h = images.reshape(len(images), -1)
            for index, (w, b) in enumerate(params):
                h = h @ w + b
                h = jax.nn.relu(h) if index < 2 else h
            return h[:, 0]
    else:
        convs = [(jax.random.normal(next(keys), (3, 3, c, 32)) * (2 / (9 * c)) ** 0.5, jnp.zeros(32)) for c in (1, 32)]
        params = convs + [dense(2 * 2 * 32, 256), dense(256, 1)]

        def forward(params, images):
            h = images
            for w, b in params[:2]:
                h = jax.lax.conv_general_dilated(h, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                h = pool(jax.nn.relu(h + b))
            (w1, b1), (w2, b2) = params[2:]
            return (jax.nn.relu(h.reshape(len(h), -1) @ w1 + b1) @ w2 + b2)[:, 0]

    def step(params, images, labels, batch):
        loss = lambda p: jnp.mean((forward(p, images[batch]) - labels[batch]) ** 2)  # noqa: E731
        return jax.tree.map(lambda p, g: p - 1e-5 * g, params, jax.grad(loss)(params))

    x, y = jax.device_put(x), jax.device_put(y)
    one_step = jax.jit(step, donate_argnums=0)
    scan_epoch = jax.jit(
        lambda params, images, labels, batches: jax.lax.scan(
            lambda p, batch: (step(p, images, labels, batch), None), params, batches
        )[0],
        donate_argnums=0,
    )
    rng, full = np.random.default_rng(0), len(x) // BATCH_SIZE * BATCH_SIZE
    seconds = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        started = time.perf_counter()
        if model == "mlp":
            params = scan_epoch(params, x, y, order[:full].reshape(-1, BATCH_SIZE))
        else:
            for start in range(0, full, BATCH_SIZE):
                params = one_step(params, x, y, order[start : start + BATCH_SIZE])
        params = one_step(params, x, y, order[full:])
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


def gemm_gflops() -> dict:
    """Throughput of the MLP's matrix product (32x256 by 256x256), in GFLOP/s: by XLA in a
    compiled loop, and by NumPy's BLAS; and of a large product by NumPy, near the CPU's peak."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((32, 256), dtype=np.float32), rng.random((256, 256), dtype=np.float32)
    big = rng.random((1024, 1024), dtype=np.float32)
    repeats, flop = 2000, 2 * 32 * 256 * 256
    chain = jax.jit(lambda a, b: jax.lax.fori_loop(0, repeats, lambda i, c: c + (a + c[:1] * 1e-9) @ b, jnp.zeros_like(a)))
    chain(a, b).block_until_ready()

    def rate(function, flops):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return flops / statistics.median(times) / 1e9

    return {
        "xla": rate(lambda: chain(a, b).block_until_ready(), repeats * flop),
        "numpy": rate(lambda: [a @ b for _ in range(repeats)], repeats * flop),
        "numpy_1024": rate(lambda: [big @ big for _ in range(8)], 8 * 2 * 1024**3),
    }


def measure(backend: str, key: str, number: int, epochs_scale: float, last: bool) -> dict:
    """One worker process on `backend` for round `number`; its result, or {"error": ...}."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, __file__, "--worker", key, "--round", str(number), "--epochs-scale", str(epochs_scale)]
    done = subprocess.run(command + (["--last"] if last else []), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def pooled(rounds: list[dict]) -> dict:
    """One result from a workload's rounds on one backend: median seconds per epoch over every
    round's timed epochs, and the last round's prediction and floors."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return failed[0]
    result = dict(rounds[-1])
    for field in ("epoch_seconds", "first_epoch_seconds"):
        result[field] = {
            kind: statistics.median([t for r in rounds for t in r[field][kind]]) for kind in ("fit", "img2num")
        }
    result["epochs_timed"] = {kind: sum(len(r["epoch_seconds"][kind]) for r in rounds) for kind in ("fit", "img2num")}
    if "bare_jax_epoch_seconds" in result:
        result["bare_jax_epoch_seconds"] = statistics.median(r["bare_jax_epoch_seconds"] for r in rounds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="A/B rounds per workload (default: 8 for the tutorial's models, 2 for the others)")
    parser.add_argument("--quick", action="store_true", help="one round, fewer epochs")
    parser.add_argument("--only", help="comma-separated workload keys: " + ", ".join(w.key for w in WORKLOADS))
    parser.add_argument("--backends", default=",".join(BACKENDS), help="backends to try when installed (default %(default)s)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--epochs-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.round, args.epochs_scale, args.last)))
        return

    from importlib.metadata import version

    from img2num.backends import preferred_backend
    from img2num.models import model_spec

    rounds, scale = (1, 0.6) if args.quick else (args.rounds, 1.0)
    keys = args.only.split(",") if args.only else [w.key for w in WORKLOADS]
    workloads = [w for w in WORKLOADS if w.key in keys]
    backends = [b for b in args.backends.split(",") if importlib.util.find_spec(b) is not None]
    missing = [b for b in args.backends.split(",") if b not in backends]
    installed = ", ".join(f"{name} {version(name)}" for name in ("keras", "jax", "torch") if importlib.util.find_spec(name))
    print(f"{installed}, {os.cpu_count()} CPUs, batch {BATCH_SIZE}, {rounds or 'default'} A/B rounds")
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (pip install -e '.[bench]' adds tensorflow)")

    results: dict = {}
    for workload in workloads:
        # Round after round, each backend in turn: the machine's drift over minutes then moves
        # every backend alike, so the backends compare as the A/B pairs do.
        count = rounds or workload.rounds
        raw: dict = {backend: [] for backend in backends}
        for number in range(count):
            for backend in backends[number % len(backends) :] + backends[: number % len(backends)]:
                raw[backend].append(measure(backend, workload.key, number, scale, last=number == count - 1))
                print(f"  measured {workload.key} on {backend}, round {number + 1} of {count}", file=sys.stderr, flush=True)
        for backend in backends:
            results[(workload.key, backend)] = pooled(raw[backend])

    print("\ntraining, seconds per epoch (median of the epochs after each run's first) and peak memory")
    header = f"{'workload':<34} {'backend':<10} {'plain fit':>10} {'img2num':>10} {'trainer':>18} {'ratio':>7} {'peak MB':>8}"
    print(header)
    for workload in workloads:
        for backend in backends:
            result = results[(workload.key, backend)]
            if "error" in result:
                print(f"{workload.label:<34} {backend:<10} failed: {result['error']}")
                continue
            fit, ours = result["epoch_seconds"]["fit"], result["epoch_seconds"]["img2num"]
            print(
                f"{workload.label:<34} {backend:<10} {fit:>10.4f} {ours:>10.4f} {result['trainer']:>18} "
                f"{fit / ours:>6.2f}x {result['peak_mb']:>8.0f}"
            )

    print("\nprediction, images per second (batches of 256, 2048 images)")
    print(f"{'workload':<34} {'backend':<10} {'keras':>10} {'img2num':>10} {'ratio':>7}")
    for workload in workloads:
        for backend in backends:
            result = results[(workload.key, backend)]
            if "error" not in result:
                theirs, ours = result["images_per_second"]["fit"], result["images_per_second"]["img2num"]
                print(f"{workload.label:<34} {backend:<10} {theirs:>10,.0f} {ours:>10,.0f} {ours / theirs:>6.2f}x")

    print("\nfastest per workload: img2num on each backend, against the fastest plain fit, and the auto rule")
    print(f"{'workload':<34} {'fastest':<22} {'vs best plain fit':>18} {'auto picks':>11}")
    for workload in workloads:
        ours = {b: results[(workload.key, b)]["epoch_seconds"]["img2num"] for b in backends if "error" not in results[(workload.key, b)]}
        plain = {b: results[(workload.key, b)]["epoch_seconds"]["fit"] for b in backends if "error" not in results[(workload.key, b)]}
        if not ours:
            continue
        best = min(ours, key=ours.get)
        best_plain = min(plain, key=plain.get)
        auto = preferred_backend([model_spec(workload.model)], workload.shape)
        print(
            f"{workload.label:<34} {best + f' {ours[best]:.4f} s':<22} "
            f"{plain[best_plain] / ours[best]:>8.2f}x ({best_plain}) {auto:>11}"
            + ("" if auto == best else f"  (auto: {ours.get(auto, float('nan')):.4f} s)")
        )
    tutorial = [w for w in workloads if w.key in ("mlp16", "cnn16")]
    if tutorial and "jax" in backends:
        print("\ntargets on the tutorial's models, img2num on JAX against plain fit:")
        for workload in tutorial:
            ours = results[(workload.key, "jax")]["epoch_seconds"]["img2num"]
            line = f"  {workload.model}: {ours:.4f} s/epoch"
            for backend in backends:
                plain = results[(workload.key, backend)]["epoch_seconds"]["fit"]
                line += f", {plain / ours:.2f}x faster than fit on {backend}"
            print(line)
            bare = results[(workload.key, "jax")]["bare_jax_epoch_seconds"]
            print(
                f"    floor: a hand-written JAX loop (plain SGD, no Keras, no validation) {bare:.4f} s/epoch; "
                f"img2num takes {ours / bare:.2f}x of it"
            )
            gemm = results[(workload.key, "jax")].get("gemm_gflops")
            if gemm:
                print(
                    f"    matrix product 32x256 by 256x256: XLA {gemm['xla']:.0f} GFLOP/s, NumPy {gemm['numpy']:.0f}; "
                    f"NumPy 1024x1024: {gemm['numpy_1024']:.0f}"
                )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({f"{key}/{backend}": value for (key, backend), value in results.items()}, handle, indent=1)


if __name__ == "__main__":
    main()
