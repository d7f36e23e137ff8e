"""Whole-process speed: the complete `img2num train` command beside a plain Keras script.

For each workload, round after round, one process runs `img2num train ... --plain` (data,
backend, model, training, evaluation of every split, pictures, the saved run folder) and one
process per installed backend runs a plain Keras script that does only load + build + `fit`
(the tutorial's way). The order rotates with the round, so the machine's drift moves every
side alike. It prints the median wall seconds of each process (from the launch to the exit),
the ratios, and where img2num's seconds go: start-up (Python, imports, backend), data, model
build, compilation (the first epoch's excess over the others), the loop, evaluation, pictures,
saving, and the exit.

The img2num process runs `img2num.cli.main`, as the `img2num` script does, with light timers
wrapped around the functions of `img2num.training` that mark the phases. JAX's compilation
cache goes to a folder of the benchmark's own: round 1 starts with it empty (the first run a
user sees), the later rounds find it filled (every run after); `--cold` empties it before every
img2num run, and `--first-and-second` runs img2num twice a round, first with it emptied, then
with it filled. `--img2num-backends jax,torch` runs img2num once per backend named (for the
backend rule), `auto` (the default) as a user would. Each line and table carries the machine's
load average.

    .venv/bin/python benchmarks/command_speed.py                       # every workload, 3 rounds
    .venv/bin/python benchmarks/command_speed.py --only mlp16,cnn16,cnn64 --first-and-second --backends jax,torch
    .venv/bin/python benchmarks/command_speed.py --only cnn64,cnn128g,cnn128c --img2num-backends jax,torch --backends none
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    key: str
    model: str
    task: str
    shape: tuple[int, int, int]
    train: int
    val: int
    test: int
    epochs: int
    # Plain Keras runs on these backends (when installed): JAX is the fastest plain `fit` at
    # 16x16 (PyTorch took 0.41 s per MLP epoch against JAX's 0.06, benchmarks/speed.py).
    backends: tuple[str, ...] = ("jax", "tensorflow")

    @property
    def label(self) -> str:
        return f"{self.model} {'x'.join(map(str, self.shape))}, {self.train} images, {self.epochs} epochs"


EVERY = ("jax", "torch", "tensorflow")
WORKLOADS = [
    # The tutorial's two models on its data (issue 16's workloads).
    Workload("mlp16", "mlp", "points", (16, 16, 1), 1500, 300, 100, 200),
    Workload("cnn16", "cnn", "points", (16, 16, 1), 1500, 300, 100, 100),
    # The tutorial's CNN on photo-like RGB images.
    Workload("cnn64", "cnn", "dust", (64, 64, 3), 512, 128, 100, 5, EVERY),
    # The tutorial's CNN at the sizes users have, grey and RGB, for its backend rule
    # (`ModelSpec.torch_from_pixels`; run with --img2num-backends jax,torch).
    Workload("cnn32g", "cnn", "points", (32, 32, 1), 1200, 240, 100, 5, EVERY),
    Workload("cnn32c", "cnn", "points", (32, 32, 3), 1200, 240, 100, 5, EVERY),
    Workload("cnn64g", "cnn", "points", (64, 64, 1), 512, 128, 100, 5, EVERY),
    Workload("cnn128g", "cnn", "points", (128, 128, 1), 256, 64, 100, 3, EVERY),
    Workload("cnn128c", "cnn", "points", (128, 128, 3), 256, 64, 100, 3, EVERY),
]
BACKENDS = ("jax", "torch", "tensorflow")
PHASES = ("start-up", "data", "build", "compile", "loop", "evaluation", "calibration", "pictures", "saving", "exit")


def generate(workload: Workload, folder: Path) -> Path:
    """The workload's data folder (train/val/test.npz), written once."""
    data = folder / workload.key
    if not (data / "test.npz").exists():
        height, width, channels = workload.shape
        command = [
            sys.executable, "-m", "img2num", "generate", str(data), "--task", workload.task,
            "--height", str(height), "--width", str(width), "--train-size", str(workload.train),
            "--val-size", str(workload.val), "--test-size", str(workload.test), "--overwrite",
        ]
        if workload.task == "points":
            command += ["--channels", str(channels)]
        subprocess.run(command, check=True, capture_output=True)
    return data


def timed(command: list[str], env: dict) -> tuple[float, dict]:
    """Wall seconds of `command` from launch to exit, and the marks it wrote (with the CPU
    seconds it used, which a machine shared with other work changes less than wall time)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        marks_file = handle.name
    env = {**env, "BENCH_MARKS": marks_file}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.time()
    env["BENCH_LAUNCHED"] = repr(launched)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.time() - launched
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    marks = json.loads(Path(marks_file).read_text() or "{}")
    os.unlink(marks_file)
    marks["exited"] = launched + seconds
    marks["cpu_seconds"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, marks


def img2num_phases(marks: dict) -> dict:
    """Seconds of each phase of one img2num run, from its marks (absolute wall times)."""
    epochs = marks["epoch_seconds"]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else 0.0
    compile_seconds = max(0.0, epochs[0] - steady) if epochs else 0.0
    fit = marks["fit_end"] - marks["fit_start"]
    pictures = marks.get("pictures_end", 0.0) - marks.get("pictures_start", 0.0)
    calibration = marks.get("calibrate_end", 0.0) - marks.get("calibrate_start", 0.0)
    return {
        # Python, img2num's and Keras' imports, the backend's set-up.
        "start-up": marks["data_start"] - marks["launched"] + marks["backend_end"] - marks["data_end"],
        "data": marks["data_end"] - marks["data_start"],
        "build": marks["fit_start"] - marks["backend_end"],
        "compile": compile_seconds,
        "loop": fit - compile_seconds,
        "evaluation": marks["save_start"] - marks["fit_end"] - calibration,
        "calibration": calibration,
        "pictures": pictures,
        "saving": marks["save_end"] - marks["save_start"] - pictures,
        # Printing the metrics, then the interpreter's and the backend's tear-down.
        "exit": marks["exited"] - marks["save_end"],
    }


def child_img2num(argv: list[str]) -> None:
    """Run `img2num.cli.main(argv)` with timers around the phases; write the marks."""
    marks = {"launched": float(os.environ["BENCH_LAUNCHED"]), "main": time.time()}

    import img2num.autoselect as autoselect
    import img2num.bundle as bundle
    import img2num.fitting as fitting
    import img2num.training as training

    def around(owner, name, start, end):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            marks.setdefault(start, time.time())
            try:
                return original(*args, **kwargs)
            finally:
                marks[end] = time.time()

        setattr(owner, name, wrapper)

    around(training, "resolve_splits", "data_start", "data_end")
    around(training, "select_backend", "backend_start", "backend_end")
    around(fitting, "run_epochs", "fit_start", "fit_end")  # one model named
    around(autoselect, "run_epochs", "fit_start", "fit_end")  # the automatic choice's candidates
    around(training, "_draw_pictures", "pictures_start", "pictures_end")
    around(training, "calibrate_run", "calibrate_start", "calibrate_end")
    original_save = bundle.Run.save

    def save(self, *args, **kwargs):
        marks["save_start"] = time.time()
        marks["epoch_seconds"] = [row["seconds"] for row in self.history]
        try:
            return original_save(self, *args, **kwargs)
        finally:
            marks["save_end"] = time.time()

    bundle.Run.save = save
    from img2num.cli import main

    status = main(argv)
    marks["main_end"] = time.time()
    Path(os.environ["BENCH_MARKS"]).write_text(json.dumps(marks))
    sys.exit(status)


def child_keras(model_name: str, data: str, epochs: int) -> None:
    """The plain Keras script: load the arrays, build the tutorial's model, `fit`. Nothing else."""
    marks = {"launched": float(os.environ["BENCH_LAUNCHED"]), "main": time.time()}
    import keras
    import numpy as np

    marks["imported"] = time.time()
    with np.load(f"{data}/train.npz") as train, np.load(f"{data}/val.npz") as val:
        x, y = train["x"].astype("float32") / 255.0, train["y"]
        vx, vy = val["x"].astype("float32") / 255.0, val["y"]
    layers = keras.layers
    if model_name == "mlp":
        stack = [layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(256, activation="relu"),
                 layers.Dense(256), layers.Dense(1)]
    else:
        stack = [layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                 layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                 layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(1)]
    model = keras.Sequential([keras.Input(x.shape[1:]), *stack])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    marks["fit_start"] = time.time()
    model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(vx, vy), verbose=0)
    marks["fit_end"] = time.time()
    Path(os.environ["BENCH_MARKS"]).write_text(json.dumps(marks))


def load() -> str:
    """The machine's load average over 1, 5 and 15 minutes, as `uptime` prints it."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def img2num_sides(names: list[str], first_and_second: bool) -> list[str]:
    sides = []
    for name in names:
        side = "img2num" if name == "auto" else f"img2num-{name}"
        sides += [f"{side} first", f"{side} second"] if first_and_second else [side]
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per workload (default %(default)s)")
    parser.add_argument("--only", help="comma-separated workload keys: " + ", ".join(w.key for w in WORKLOADS))
    parser.add_argument("--backends", default=",".join(BACKENDS), help="plain Keras backends when installed (default %(default)s)")
    parser.add_argument("--img2num-backends", default="auto",
                        help="img2num's --backend, one side per name, e.g. jax,torch (default %(default)s)")
    parser.add_argument("--cold", action="store_true", help="empty JAX's compilation cache before every img2num run")
    parser.add_argument("--first-and-second", action="store_true",
                        help="run img2num twice a round: first with an empty compilation cache, then with it filled")
    parser.add_argument("--img2num-args", default="", help="more options for `img2num train`, such as --no-pictures")
    parser.add_argument("--data", type=Path, help="folder for the generated data (default: a temporary one)")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    parser.add_argument("--child-img2num", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--child-keras", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_img2num is not None:
        child_img2num(args.child_img2num)
        return
    if args.child_keras is not None:
        model, data, epochs = args.child_keras
        child_keras(model, data, int(epochs))
        return

    keys = args.only.split(",") if args.only else [w.key for w in WORKLOADS]
    workloads = [w for w in WORKLOADS if w.key in keys]
    backends = [b for b in args.backends.split(",") if importlib.util.find_spec(b) is not None]
    work = Path(tempfile.mkdtemp(prefix="img2num-command-speed-"))
    data_root = args.data or work / "data"
    cache = work / "jax-cache"
    if args.cold:
        caching = "with an empty compilation cache every run"
    elif args.first_and_second:
        caching = "twice a round: first with an empty compilation cache, second with it filled"
    else:
        caching = "round 1 with an empty compilation cache"
    print(f"{os.cpu_count()} CPUs, {args.rounds} rounds, plain Keras on {', '.join(backends)}; img2num {caching}")
    print(f"start: {load()}", flush=True)
    results, loads = {}, {}
    for workload in workloads:
        data = generate(workload, data_root)
        sides = img2num_sides(args.img2num_backends.split(","), args.first_and_second)
        sides += [f"keras-{b}" for b in backends if b in workload.backends]
        # The first and second run of one backend stay together, in that order.
        groups = [sides[i : i + 2] for i in range(0, 2 * len(args.img2num_backends.split(",")), 2)] if args.first_and_second else [[s] for s in sides if s.startswith("img2num")]
        groups += [[s] for s in sides if s.startswith("keras")]
        raw: dict = {side: [] for side in sides}
        shutil.rmtree(cache, ignore_errors=True)
        for number in range(args.rounds):
            for group in groups[number % len(groups):] + groups[: number % len(groups)]:
                for side in group:
                    env = {**os.environ, "IMG2NUM_JAX_CACHE": str(cache)}
                    if side.startswith("img2num"):
                        if args.cold or side.endswith(" first"):
                            shutil.rmtree(cache, ignore_errors=True)
                        backend = side.split()[0].removeprefix("img2num").removeprefix("-") or "auto"
                        command = [
                            sys.executable, __file__, "--child-img2num", "train", str(data), "--model", workload.model,
                            "--plain", "--epochs", str(workload.epochs), "--run", str(work / "run"), "--overwrite", "--quiet",
                            "--backend", backend, *args.img2num_args.split(),
                        ]
                    else:
                        env["KERAS_BACKEND"] = side.removeprefix("keras-")
                        command = [sys.executable, __file__, "--child-keras", workload.model, str(data), str(workload.epochs)]
                    seconds, marks = timed(command, env)
                    raw[side].append({"seconds": seconds, "marks": marks})
                    print(f"  {workload.key} {side} round {number + 1}: {seconds:.2f} s ({load()})", file=sys.stderr, flush=True)
        results[workload.key] = raw
        loads[workload.key] = load()

    print(f"\nwhole process, wall seconds from launch to exit (median of {args.rounds}); "
          "faster = the plain side's median / img2num's")
    for workload in workloads:
        raw = results[workload.key]
        ours = [side for side in raw if side.startswith("img2num")]
        plain = [side for side in raw if side.startswith("keras")]
        median = {side: statistics.median(r["seconds"] for r in runs) for side, runs in raw.items()}
        cpu = {side: statistics.median(r["marks"]["cpu_seconds"] for r in runs) for side, runs in raw.items()}
        print(f"\n{workload.key}: {workload.label} ({loads[workload.key]} at its end)")
        print(f"{'side':<22} {'median':>7} {'min':>7} {'max':>7} {'CPU s':>7} " + " ".join(f"{'vs ' + p:>14}" for p in plain))
        for side in ours + plain:
            seconds = [r["seconds"] for r in raw[side]]
            ratios = " ".join(f"{median[p] / median[side]:>13.2f}x" for p in plain) if side in ours else ""
            print(f"{side:<22} {median[side]:>7.2f} {min(seconds):>7.2f} {max(seconds):>7.2f} {cpu[side]:>7.1f} {ratios}")
        if plain:
            fastest = min(plain, key=median.get)
            for side in ours:
                print(f"  {side}: {median[fastest] / median[side]:.2f}x the fastest plain fit ({fastest}), "
                      f"{cpu[fastest] / cpu[side]:.2f}x by CPU seconds")
        if not args.cold and not args.first_and_second and args.rounds > 1:
            for side in ours:
                first = raw[side][0]["seconds"]
                later = statistics.median(r["seconds"] for r in raw[side][1:])
                print(f"  {side} round 1 (empty cache) {first:.2f} s, later rounds {later:.2f} s")

    print("\nwhere the seconds go, median of the rounds (img2num; plain Keras: start-up until fit, fit, exit)")
    print(f"{'workload':<10} {'side':<22} " + " ".join(f"{p:>10}" for p in PHASES))
    for workload in workloads:
        raw = results[workload.key]
        for side, runs in raw.items():
            if side.startswith("img2num"):
                phases = [img2num_phases(r["marks"]) for r in runs]
                row = {n: statistics.median(p[n] for p in phases) for n in PHASES}
            else:
                marks = [r["marks"] for r in runs]
                row = {
                    "start-up": statistics.median(m["fit_start"] - m["launched"] for m in marks),
                    "loop": statistics.median(m["fit_end"] - m["fit_start"] for m in marks),
                    "exit": statistics.median(m["exited"] - m["fit_end"] for m in marks),
                }
            print(f"{workload.key:<10} {side:<22} " + " ".join(f"{row[n]:>10.2f}" if n in row else f"{'':>10}" for n in PHASES))
    print(f"\nend: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
