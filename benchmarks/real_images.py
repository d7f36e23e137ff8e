"""Real-image benchmark: the default model and every candidate on image-regression tasks that no
one here drew to suit a model, beside the mean and ridge baselines and, where known, the Bayes
reference.

Tasks (docs/real_images.md says how each is built): scikit-learn's handwritten digits as 32x32
grey PNGs (the label is the digit), counting discs and squares of varied size and colour on
textured 48x48 backgrounds, haze of known strength on crops of scikit-image's sample photographs
(test crops from photographs kept out of training), and the synthetic points and dust tasks.
Every task is written as an image folder with `labels.csv` (train/val/test split column), and
every model is trained by `img2num train FOLDER` in its own process, as a user runs it: the
default without `--model`, each candidate with `--model NAME`, all on the same splits. It prints
per task each entry's test MSE and R^2, seconds, the ratio of the default's test MSE to the best
candidate's, and a summary table; results.json and results.md go to --out.

    .venv/bin/python benchmarks/real_images.py                    # every task, full size
    .venv/bin/python benchmarks/real_images.py --quick            # small sizes, a smoke run
    .venv/bin/python benchmarks/real_images.py --tasks digits --models pixel_gap cnn_gap
    .venv/bin/python benchmarks/real_images.py --tasks haze --groups   # validation on held-out scenes

With --groups, a task whose images name their scene (haze: the photograph of each crop) is
given as a user who knows the scenes would give it: the training and validation crops as one
training share, the test crops (photographs no model sees) as the test split, and every run
trained with `--group-column scene`, so that validation holds out whole scenes.

Needs scikit-learn and scikit-image (pip install -e '.[real]'); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from img2num.baselines import MeanBaseline, RidgeBaseline
from img2num.config import DEFAULT_MODEL, DataConfig, DustConfig, PointsConfig, TrainConfig
from img2num.data import generate_dust_splits, generate_points_splits, read_task, reference_predictions, task_info
from img2num.data import resolve_splits, write_image_folder
from img2num.data.real import REAL_TASK_NAMES, write_real_task
from img2num.metrics import regression_metrics
from img2num.io import write_json, write_text

TASKS = (*REAL_TASK_NAMES, "points", "dust")
CANDIDATES = ("pixel_gap", "cnn_gap", "mlp", "cnn", "backbone:efficientnet_lite0", "finetune:efficientnet_lite0")
# (train, val, test) per task; --quick uses the second set and caps the epochs.
FULL_SIZES = {
    "digits": (1200, 250, 347),
    "counting": (1500, 300, 500),
    "haze": (1500, 300, 500),
    "points": (1500, 300, 1000),
    "dust": (1500, 300, 500),
}
QUICK_SIZES = {task: (300, 100, 200) for task in TASKS}
QUICK_EPOCHS = 20
DEFAULT_ENTRY = "default"
# The column naming each image's scene, where a task has one (--groups).
SCENE_COLUMN = "scene"
# Beside each run: what the benchmark read from it, for --reuse.
ENTRY_FILE = "benchmark_entry.json"


def build_task(task: str, folder: Path, sizes: tuple[int, int, int], seed: int, quick: bool, groups: bool = False) -> None:
    """Write `task` as an image folder with labels.csv (and task.json) under `folder`; with
    `groups`, its validation rows join the training rows, for `--group-column` to split."""
    if task in REAL_TASK_NAMES:
        paths = write_real_task(folder, task, sizes, seed, overwrite=True)
        if groups:
            with open(paths["labels"], newline="", encoding="utf-8") as file:
                rows = list(csv.reader(file))
            if SCENE_COLUMN not in rows[0]:
                raise SystemExit(f"{task}: its images name no scene; --groups needs a task that does (haze)")
            split = rows[0].index("split")
            for row in rows[1:]:
                row[split] = "train" if row[split] == "val" else row[split]
            with open(paths["labels"], "w", newline="", encoding="utf-8") as file:
                csv.writer(file, lineterminator="\n").writerows(rows)
        return
    train, val, test = sizes
    if task == "points":
        config = PointsConfig(train=train, val=val, test=test, seed=seed)
        splits = generate_points_splits(config)
    else:
        # The dust task's 64x64 panels; 32x32 in a quick run.
        side = 32 if quick else 64
        config = DustConfig(height=side, width=side, train=train, val=val, test=test, seed=seed)
        splits = generate_dust_splits(config)
    write_image_folder(folder, splits, overwrite=True, task=task_info(config))


def train_in_process(folder: Path, run_dir: Path, model: str | None, options: list[str], reuse: bool = False) -> dict:
    """Run `img2num train FOLDER` in its own Python, as a user would; return what its run holds.

    With `reuse`, a run that an earlier benchmark made with the same command is read back
    instead of trained again (for the default, only when the default model is still the same).
    """
    command = [sys.executable, "-m", "img2num", "train", str(folder), "--run", str(run_dir), "--overwrite", "--quiet"]
    command += (["--model", model] if model else []) + options
    record = run_dir / ENTRY_FILE
    if reuse and record.is_file():
        entry = json.loads(record.read_text(encoding="utf-8"))
        same_default = model is not None or entry.get("default_model") == DEFAULT_MODEL
        if entry.get("command") == " ".join(["img2num", *command[3:]]) and same_default:
            return entry | {"reused": True}
    entry = _train(command, run_dir)
    if "error" not in entry:
        write_json(record, entry | {"default_model": DEFAULT_MODEL})
    return entry


def _train(command: list[str], run_dir: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    entry = {"command": " ".join(["img2num", *command[3:]]), "wall_seconds": round(wall, 1), "load": os.getloadavg()[0]}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return entry | {"error": " / ".join(tail) or f"exit status {done.returncode}"}
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    selection = config.get("selection") or {}
    warning = config.get("warning")
    return entry | {
        "model": selection.get("chosen") or config.get("train", {}).get("model"),
        "metrics": metrics,
        "train_seconds": config.get("train_seconds"),
        "epochs_run": config.get("epochs_run"),
        "backend": config.get("backend"),
        "selection": selection or None,
        "warning": warning,
        "printed": done.stdout.strip().splitlines()[:12],
    }


def fit_baselines(folder: Path, options: DataConfig | None = None, seed: int = 0) -> tuple[dict, dict | None]:
    """The mean and ridge baselines' metrics on every split, and the Bayes rule's where known."""
    splits = {name: split.to_dataset() for name, split in resolve_splits(folder, seed=seed, options=options).items()}
    train, val = splits["train"], splits["val"]
    entries = {}
    for name, baseline in (("mean-baseline", MeanBaseline()), ("ridge-baseline", RidgeBaseline())):
        started = time.perf_counter()
        baseline.fit(train.x, train.y, val.x, val.y) if isinstance(baseline, RidgeBaseline) else baseline.fit(train.x, train.y)
        seconds = time.perf_counter() - started
        metrics = {split: regression_metrics(data.y, baseline.predict(data.x)) for split, data in splits.items()}
        entries[name] = {"model": name, "metrics": metrics, "train_seconds": round(seconds, 2), "wall_seconds": None}
    task = read_task(folder)
    bayes = None
    if task is not None and task.get("reference_mse") is not None:
        predicted = reference_predictions(task, splits["test"].x)
        bayes = {
            "reference_mse": task["reference_mse"],
            "test_mse": None if predicted is None else regression_metrics(splits["test"].y, predicted)["mse"],
        }
    return entries, bayes


def test_mse(entry: dict) -> float:
    return entry["metrics"]["test"]["mse"] if "metrics" in entry else float("inf")


def task_table(task: str, result: dict) -> str:
    """The per-task markdown table: one row per trained model and baseline."""
    lines = [
        f"### {task} ({' / '.join(map(str, result['sizes']))} images, {result['shape']})",
        "",
        "| entry | model | test MSE | test R^2 | val MSE | val R^2 | train s | wall s | epochs | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["entries"].items():
        if "error" in entry:
            lines.append(f"| {name} | failed: {entry['error']} | | | | | | {entry['wall_seconds']} | | |")
            continue
        m = entry["metrics"]
        load = f"{entry['load']:.1f}" if entry.get("load") is not None else ""
        lines.append(
            f"| {name} | {entry['model']} | {m['test']['mse']:.4g} | {m['test']['r2']:.3f} | {m['val']['mse']:.4g} "
            f"| {m['val']['r2']:.3f} "
            f"| {_number(entry.get('train_seconds'))} | {_number(entry.get('wall_seconds'))} "
            f"| {entry.get('epochs_run') or ''} | {load} |"
        )
    lines.append("")
    lines.append(verdict(result))
    return "\n".join(lines)


def verdict(result: dict) -> str:
    """One line: the default against the best candidate and the Bayes reference."""
    default = result["entries"].get(DEFAULT_ENTRY)
    best_name = result.get("best_candidate")
    parts = []
    if default and "metrics" in default and best_name:
        parts.append(
            f"default ({default['model']}) / best candidate ({best_name}): {result['default_over_best']:.3f}x test MSE"
        )
    if result.get("bayes"):
        bayes = result["bayes"]
        parts.append(f"Bayes reference MSE {bayes['reference_mse']:.4g} (the Bayes rule on this test split: {bayes['test_mse']:.4g})")
        if default and "metrics" in default:
            parts.append(f"default / Bayes reference {test_mse(default) / bayes['reference_mse']:.3f}x")
    if default and default.get("selection"):
        parts.append(f"auto chose {default['selection']['chosen']}: {default['selection']['why']}")
    if default and default.get("warning"):
        parts.append(f"the default warned: {default['warning']}")
    return "; ".join(parts) + "." if parts else ""


def summary_table(results: dict) -> str:
    lines = [
        "| task | default: model | default test MSE (R^2) | default s | best candidate: test MSE | default / best | ridge | mean | Bayes reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, result in results.items():
        entries = result["entries"]
        default = entries.get(DEFAULT_ENTRY, {})
        best = result.get("best_candidate")
        bayes = result.get("bayes")
        cells = [
            task,
            default.get("model", "failed"),
            f"{test_mse(default):.4g} ({default['metrics']['test']['r2']:.3f})" if "metrics" in default else "",
            _number(default.get("wall_seconds")),
            f"{best}: {test_mse(entries[best]):.4g}" if best else "",
            f"{result['default_over_best']:.3f}x" if result.get("default_over_best") else "",
            f"{test_mse(entries['ridge-baseline']):.4g}",
            f"{test_mse(entries['mean-baseline']):.4g}",
            f"{bayes['reference_mse']:.4g}" if bayes else "not known",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value) -> str:
    return "" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--models", nargs="*", default=list(CANDIDATES), help="candidate models, each trained with --model NAME")
    parser.add_argument("--quick", action="store_true", help=f"small splits {QUICK_SIZES['digits']}, at most {QUICK_EPOCHS} epochs, a smoke run")
    parser.add_argument("--time-limit", type=float, help="--time-limit for the default's run, where train has one (default: train's own)")
    parser.add_argument("--candidate-time-limit", type=float, help="--time-limit for each candidate's run too (default: none, as a named model trains)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    parser.add_argument("--out", type=Path, default=Path("results/real_images"))
    parser.add_argument("--groups", action="store_true", help="validate on held-out scenes: train every run with --group-column scene (haze)")
    parser.add_argument("--reuse", action="store_true", help="read back the data folders and the runs an earlier benchmark in --out made with the same command, instead of making them again")
    args = parser.parse_args()

    has_time_limit = any(field.name == "time_limit" for field in dataclasses.fields(TrainConfig))
    time_limit = args.time_limit
    common = ["--seed", str(args.seed)] + (["--epochs", str(QUICK_EPOCHS)] if args.quick else [])
    common += ["--group-column", SCENE_COLUMN] if args.groups else []
    options = DataConfig(group_column=SCENE_COLUMN) if args.groups else None
    default_options = list(common)
    if time_limit is not None:
        if has_time_limit:
            default_options += ["--time-limit", f"{time_limit:g}"]
        else:
            print(f"note: this img2num's train has no --time-limit; {time_limit:g} s not applied")
    print(
        f"img2num default model {DEFAULT_MODEL!r}; keras {version('keras')}; {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.2f}; seed {args.seed}{'; quick' if args.quick else ''}",
        flush=True,
    )
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    results = {}
    for task in args.tasks:
        folder = args.out / "data" / (f"{task}-groups" if args.groups else task)
        started = time.perf_counter()
        # The same seed writes the same bytes, so a folder an earlier call wrote can serve again.
        if not (args.reuse and (folder / "labels.csv").is_file() and (folder / "task.json").is_file()):
            build_task(task, folder, sizes[task], args.seed, args.quick, args.groups)
        entries, bayes = fit_baselines(folder, options, args.seed)
        shape = "x".join(str(d) for d in resolve_splits(folder, seed=args.seed, options=options)["train"].image_shape)
        print(f"\n{task}: built {folder} ({shape}) in {time.perf_counter() - started:.1f} s", flush=True)
        trained = {}
        if DEFAULT_MODEL in args.models:
            print(f"  the default ({DEFAULT_MODEL}) is a candidate: its run counts for both", flush=True)
        else:
            trained[DEFAULT_ENTRY] = train_in_process(
                folder, args.out / "runs" / folder.name / DEFAULT_ENTRY, None, default_options, args.reuse
            )
            _say(DEFAULT_ENTRY, trained[DEFAULT_ENTRY])
        limit = [] if args.candidate_time_limit is None else ["--time-limit", f"{args.candidate_time_limit:g}"]
        for model in args.models:
            trained[model] = train_in_process(folder, args.out / "runs" / folder.name / model, model, common + limit, args.reuse)
            _say(model, trained[model])
        if DEFAULT_MODEL in args.models:
            trained = {DEFAULT_ENTRY: trained[DEFAULT_MODEL], **trained}
        candidates = {name: entry for name, entry in trained.items() if name != DEFAULT_ENTRY and "metrics" in entry}
        best = min(candidates, key=lambda name: test_mse(candidates[name])) if candidates else None
        result = {
            "sizes": list(sizes[task]),
            "shape": shape,
            "entries": {**trained, **entries},
            "best_candidate": best,
            "default_over_best": (
                test_mse(trained[DEFAULT_ENTRY]) / test_mse(candidates[best])
                if best and "metrics" in trained.get(DEFAULT_ENTRY, {})
                else None
            ),
            "bayes": bayes,
        }
        results[task] = result
        print("\n" + task_table(task, result), flush=True)
        _save(args.out, results, args)
    print("\n" + summary_table(results))
    print(f"\nresults in {args.out / 'results.md'} and {args.out / 'results.json'}")


def _say(name: str, entry: dict) -> None:
    if "error" in entry:
        print(f"  {name}: failed after {entry['wall_seconds']} s: {entry['error']}", flush=True)
    else:
        m = entry["metrics"]["test"]
        print(
            f"  {name} ({entry['model']}): test MSE {m['mse']:.4g}, R^2 {m['r2']:.3f} "
            f"(validation R^2 {entry['metrics']['val']['r2']:.3f}), "
            f"{entry['wall_seconds']} s wall, load {entry['load']:.1f}{' (reused)' if entry.get('reused') else ''}",
            flush=True,
        )


def _save(out: Path, results: dict, args) -> None:
    header = (
        f"Real-image benchmark: `{' '.join(['benchmarks/real_images.py', *sys.argv[1:]])}`, default model "
        f"{DEFAULT_MODEL!r}, {os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f}.\n\n"
    )
    tables = "\n\n".join(task_table(task, result) for task, result in results.items())
    write_text(out / "results.md", header + summary_table(results) + "\n\n" + tables + "\n")
    write_json(out / "results.json", {"command": sys.argv, "default_model": DEFAULT_MODEL, "tasks": results})


if __name__ == "__main__":
    main()
