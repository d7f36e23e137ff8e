"""Speed of the EfficientNet-Lite0 backbone: feature extraction and fine-tuning, per runtime.

Feature extraction is the forward pass of the backbone to the spatial means of its five stage
outputs (P1-P5, 16+24+40+112+1280 numbers per image), on `--images` random images at each
`--sizes`, batch `--batch`; images per second, the median of `--rounds` rounds after one round
that compiles. A fine-tuning epoch is `--tune-images` images at `--tune-size` px, batch 32, the
whole backbone trainable with a Dense(1) head on the global mean of its last stage, Adam and MSE;
seconds per epoch, the median of `--rounds` epochs after one that compiles.

Each runtime runs in its own process, one after the other: keras-hub's backbone (img2num's
`backbone:efficientnet_lite0` preset) with Keras on JAX and on PyTorch (plain `predict` and
`fit`), the same network in plain PyTorch eager mode (the reference `efficientnet-lite-pytorch`,
`torch.no_grad()` and `eval()` to extract), and ONNX Runtime on that network exported to ONNX
(extraction only). The load average is printed beside the figures: on a shared machine they
move with it.

    .venv/bin/python benchmarks/backbones.py                # needs pip install -e '.[bench]'
    .venv/bin/python benchmarks/backbones.py --quick        # 1 round, 64 images, one size
    .venv/bin/python benchmarks/backbones.py --tune-rounds 1  # the figures in docs/backbones.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNTIMES = ("keras-jax", "keras-torch", "torch-eager", "onnxruntime")
# Reference block index after which each stage output is taken (before each stride-2 block,
# and the head): the same points as keras-hub's pyramid_outputs P1-P5.
REFERENCE_STAGE_ENDS = (0, 2, 4, 10)


def images(count: int, size: int, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def normalised(pixels):
    from img2num.backbones.lite0 import LITE0_OFFSET, LITE0_SCALE

    return pixels * LITE0_SCALE + LITE0_OFFSET


def timed_rounds(run, rounds: int) -> tuple[float, list[float]]:
    """Seconds of a first (compiling) call of `run`, and of each of `rounds` calls after it."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return first, seconds


# --- Keras (keras-hub backbone) -----------------------------------------------------------


def keras_worker(args) -> dict:
    import keras
    import numpy as np

    from img2num.backbones.presets import load_backbone
    from img2num.jax_ops import use_fast_depthwise

    # As img2num runs it: on JAX, depthwise convolutions as shifted sums (a no-op elsewhere).
    use_fast_depthwise()

    backbone, info = load_backbone("efficientnet_lite0")
    pooled = [keras.layers.GlobalAveragePooling2D()(backbone.pyramid_outputs[s]) for s in info.stages]
    extractor = keras.Model(backbone.inputs, keras.layers.Concatenate()(pooled))
    out = {"extract": {}, "tune": None}
    for size in args.sizes:
        x = normalised(images(args.images, size))
        first, seconds = timed_rounds(lambda: extractor.predict(x, batch_size=args.batch, verbose=0), args.rounds)
        out["extract"][size] = {"first": first, "seconds": seconds, "features": int(extractor.output.shape[-1])}
    if args.tune_images:
        backbone.trainable = True
        head = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(backbone.output))
        model = keras.Model(backbone.inputs, head)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
        x = normalised(images(args.tune_images, args.tune_size, seed=1))
        y = np.random.default_rng(2).normal(size=(args.tune_images, 1)).astype("float32")
        first, seconds = timed_rounds(lambda: model.fit(x, y, batch_size=32, epochs=1, verbose=0), args.tune_rounds)
        out["tune"] = {"first": first, "seconds": seconds}
    return out


# --- the reference network in PyTorch ------------------------------------------------------


def reference_network():
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from img2num.backbones.lite0 import lite0_weights_file

    network = EfficientNet.from_name("efficientnet-lite0")
    network.load_state_dict(torch.load(lite0_weights_file(), map_location="cpu", weights_only=True))
    return network


def pooled_reference(network):
    """The reference network as a module returning the concatenated stage means (P1-P5)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, x):
            net = self.network
            x = net._swish(net._bn0(net._conv_stem(x)))
            means = []
            for index, block in enumerate(net._blocks):
                x = block(x)
                if index in REFERENCE_STAGE_ENDS:
                    means.append(x.mean(dim=(2, 3)))
            x = net._swish(net._bn1(net._conv_head(x)))
            means.append(x.mean(dim=(2, 3)))
            return torch.cat(means, dim=1)

    return Pooled()


def torch_batches(x, batch: int):
    import torch

    tensor = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    return [tensor[i : i + batch] for i in range(0, len(tensor), batch)]


def torch_worker(args) -> dict:
    import numpy as np
    import torch

    model = pooled_reference(reference_network()).eval()
    out = {"extract": {}, "tune": None}

    def extract(batches):
        with torch.no_grad():
            return [model(b) for b in batches]

    for size in args.sizes:
        batches = torch_batches(normalised(images(args.images, size)), args.batch)
        first, seconds = timed_rounds(lambda: extract(batches), args.rounds)
        out["extract"][size] = {"first": first, "seconds": seconds, "features": int(extract(batches[:1])[0].shape[1])}
    if args.tune_images:
        network = reference_network().train()
        network._fc = torch.nn.Linear(1280, 1)
        network._dropout = torch.nn.Identity()
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
        batches = torch_batches(normalised(images(args.tune_images, args.tune_size, seed=1)), 32)
        y = torch.from_numpy(np.random.default_rng(2).normal(size=(args.tune_images, 1)).astype("float32"))
        targets = [y[i : i + 32] for i in range(0, len(y), 32)]

        def epoch():
            for xb, yb in zip(batches, targets):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(network(xb), yb)
                loss.backward()
                optimizer.step()

        first, seconds = timed_rounds(epoch, args.tune_rounds)
        out["tune"] = {"first": first, "seconds": seconds}
    return out


def onnx_worker(args) -> dict:
    import numpy as np
    import onnxruntime
    import torch

    model = pooled_reference(reference_network()).eval()
    out = {"extract": {}, "tune": None}
    folder = tempfile.mkdtemp(prefix="img2num-onnx-")
    for size in args.sizes:
        path = os.path.join(folder, f"lite0_{size}.onnx")
        sample = torch.zeros(1, 3, size, size)
        torch.onnx.export(
            model, (sample,), path, input_names=["x"], output_names=["features"],
            dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False,
        )
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(normalised(images(args.images, size)).transpose(0, 3, 1, 2))
        batches = [x[i : i + args.batch] for i in range(0, len(x), args.batch)]
        first, seconds = timed_rounds(lambda: [session.run(None, {"x": b}) for b in batches], args.rounds)
        out["extract"][size] = {"first": first, "seconds": seconds, "features": int(session.run(None, {"x": batches[0][:1]})[0].shape[1])}
    return out


# --- the table -----------------------------------------------------------------------------


def run_worker(runtime: str, argv: list[str]) -> dict | str:
    env = {**os.environ}
    if runtime.startswith("keras-"):
        env["KERAS_BACKEND"] = runtime.split("-", 1)[1]
    done = subprocess.run(
        [sys.executable, __file__, "--worker", runtime, *argv], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def missing(runtime: str) -> str | None:
    needs = {"torch-eager": ["efficientnet_lite_pytorch"], "onnxruntime": ["efficientnet_lite_pytorch", "onnx", "onnxruntime"]}
    absent = [name for name in needs.get(runtime, []) if importlib.util.find_spec(name) is None]
    return f"not installed: {', '.join(absent)} (pip install -e '.[bench]')" if absent else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tune-images", type=int, default=512)
    parser.add_argument("--tune-size", type=int, default=64)
    parser.add_argument("--tune-rounds", type=int, default=3, help="epochs timed after the one that compiles")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--quick", action="store_true", help="1 round, 64 images, 96 px, 128 images to tune")
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.images, args.sizes, args.tune_images, args.tune_rounds = 1, 64, [96], 128, 1
    if args.worker:
        work = {"keras-jax": keras_worker, "keras-torch": keras_worker, "torch-eager": torch_worker, "onnxruntime": onnx_worker}
        print(json.dumps(work[args.worker](args)))
        return
    argv = ["--sizes", *map(str, args.sizes), "--images", str(args.images), "--batch", str(args.batch),
            "--rounds", str(args.rounds), "--tune-images", str(args.tune_images), "--tune-size", str(args.tune_size),
            "--tune-rounds", str(args.tune_rounds)]
    results, loads = {}, {}
    for runtime in args.runtimes:
        reason = missing(runtime)
        before = os.getloadavg()[0]
        results[runtime] = reason or run_worker(runtime, argv)
        loads[runtime] = (before, os.getloadavg()[0])
        print(f"# {runtime} done (load average {before:.1f} -> {loads[runtime][1]:.1f})", file=sys.stderr, flush=True)

    heads = [f"extract {s}px img/s" for s in args.sizes] + [f"tune epoch s ({args.tune_images} x {args.tune_size}px)", "first call s", "load avg"]
    print(
        f"EfficientNet-Lite0: extraction of {args.images} images, batch {args.batch}, median of {args.rounds} rounds; "
        f"fine-tuning median of {args.tune_rounds} epochs; each after one that compiles"
    )
    print("| runtime | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for runtime, result in results.items():
        if isinstance(result, str):
            print(f"| {runtime} | {result} |")
            continue
        cells = []
        for size in args.sizes:
            entry = result["extract"][str(size)]
            cells.append(f"{args.images / statistics.median(entry['seconds']):.0f}")
        tune = result["tune"]
        cells.append(f"{statistics.median(tune['seconds']):.1f}" if tune else "-")
        firsts = [f"{result['extract'][str(s)]['first']:.1f}" for s in args.sizes] + ([f"{tune['first']:.1f}"] if tune else [])
        cells.append("/".join(firsts))
        cells.append(f"{loads[runtime][0]:.1f}-{loads[runtime][1]:.1f}")
        print(f"| {runtime} | " + " | ".join(cells) + " |")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
