"""Comparing models: every named model and the baselines, trained on identical splits and scored
on the same test images, written as a leaderboard, pictures, a markdown summary and one HTML report."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import numpy as np

from img2num.autoselect import expand_models
from img2num.backends import choose_backend, select_backend
from img2num.clock import time_reserve
from img2num.config import AUTO_MODEL, DataConfig, TrainConfig
from img2num.crossval import CV_KINDS, cv_data, cv_results, fold_splits, group_summary
from img2num.data import Dataset, Splits, hold_out, near_copy_record, read_task, reference_predictions, resolve_splits, validation_record
from img2num.errors import Img2NumError, Img2NumWarning
from img2num.intervals import coverage_record
from img2num.io import FolderKind, atomic_folder, check_replaceable, data_reads, progress_printer, write_json, write_text
from img2num.metrics import METRIC_NAMES, metrics_by_group, regression_metrics
from img2num.models import list_models
from img2num.registry import check_model_name, model_folder_name, model_spec
from img2num.training import train

BASELINE_NAMES = ("mean-baseline", "ridge-baseline")
REFERENCE_NAME = "bayes-rule"
RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.md"
LEADERBOARD_CSV = "leaderboard.csv"
REPORT_MD = "report.md"
# What `--overwrite` may replace with comparison results (older ones without the marker by their files).
COMPARE_FOLDER = FolderKind("compare", "comparison results folder", (RESULTS_FILE, LEADERBOARD_FILE))
REPORT_HTML = "report.html"
LOSS_CURVES = "loss_curves.png"
SAMPLES = "samples.png"
BY_GROUP_PICTURE = "pictures/by-group.png"
# Seconds each model's pictures in the report take at most, kept from a time limit.
COMPARE_SECONDS_PER_MODEL = 2.0


def compare(
    data: Dataset | str | Path,
    models: Sequence[str] | None = None,
    *,
    val: Dataset | str | Path | None = None,
    test: Dataset | str | Path | None = None,
    out_dir: str | Path = "results/compare",
    epochs: int | None = None,
    seeds: int = 1,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    reference_mse: float | None = None,
    options: DataConfig | None = None,
    keep_runs: bool = True,
    overwrite: bool = False,
    quiet: bool = False,
    stream: TextIO | None = None,
    backend: str = "auto",
    time_limit: float | None = None,
    cv: str | None = None,
    folds: int = 5,
) -> dict:
    """Train every named model and fit the baselines on the same splits, and report how they compare.

    The splits are resolved once (held-out shares use `seed`), so every model and seed sees the
    same training, validation and test images; each seed changes weight initialisation and
    shuffling only. The baselines (the training mean, and ridge regression on downsampled pixels
    with its penalty chosen on the validation split) need no seed and are fitted once.

    The output folder holds `leaderboard.md` and `leaderboard.csv` (sorted by test MSE),
    `results.json` (every number, per seed), `report.md` and a self-contained `report.html`,
    `samples.png` (25 training images), `loss_curves.png`, `pictures/NAME-diagnostics.png` and `pictures/NAME-worst.png` per model
    (first seed), and, with `keep_runs`, each trained run under `runs/seed-SEED/MODEL`. It
    appears only when everything is done. With a group column (`options.group_column`) the
    results also hold each group's test metrics (`by_group`, a table in the reports and
    `pictures/by-group.png`).

    With `cv="groups"`, every model and baseline is trained once per fold instead (`folds`
    times the training): each fold tests whole groups no other fold tests (`fold_splits`), and
    the leaderboard gives test MSE and R^2 as mean and spread over folds; `results.json`,
    `leaderboard.md`, `report.md`, `report.html` and `pictures/by-group.png` (each group scored
    in its own fold) are written, runs under `runs/fold-K/seed-SEED/MODEL`.

    Args:
        data: Training data, as `resolve_splits` takes it: a `Dataset`, an `.npz` file, a folder
            from `img2num generate` (its splits and `task.json` are used), or a label CSV naming
            image files (or a folder holding one). Every split is decoded into memory.
        models: Registered model names; default every registered model.
        val: Validation data; default the folder's, else `val_fraction` held out.
        test: Test data; default the folder's, else `test_fraction` of the training data held out.
        out_dir: The results folder to create.
        epochs: Training epochs per model; default `TrainConfig`'s.
        seeds: How many seeds to train every model on: `seed`, `seed + 1`, ...
        seed: The first training seed; also the seed of held-out shares.
        val_fraction: Share held out for validation when there is no validation data.
        test_fraction: Share held out for testing when there is no test data.
        reference_mse: Best possible test MSE of the task; default the data folder's `task.json`.
        options: How label CSVs and image files are read; its test fraction is `test_fraction`.
        keep_runs: Save each trained run folder inside the results folder.
        overwrite: Replace an existing results folder once the new one is complete.
        quiet: Print no progress.
        stream: Where progress goes (default: stderr).
        backend: Keras backend for every model: "auto" (KERAS_BACKEND when set, else the
            faster one for the models and image size, see `img2num.backends`) or a name.
        time_limit: Most seconds the whole comparison takes: each model and seed in turn gets an
            equal share of the time left, less a reserve for the baselines and the report. None
            trains every model as `TrainConfig` says ("auto" with its own default limit).
        cv: "groups" to cross-validate by whole groups of `options.group_column`; None trains
            on one set of splits.
        folds: With `cv`, the most folds: one group each when there are at most this many
            groups, else this many folds of whole groups.

    Returns:
        The content of `results.json` plus `folder`: data, settings, reference, every entry
        (model or baseline, per seed) and the leaderboard.

    Raises:
        Img2NumError: Bad data or options, an unknown model, or an existing folder without
            `overwrite`; with `cv`, no group column, given validation or test data, or too few
            groups.
    """
    models = _checked_models(models)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise Img2NumError(f"the number of seeds must be a whole number of at least 1, got {seeds!r}")
    if not 0.0 < test_fraction < 1.0:
        raise Img2NumError(f"test fraction must be between 0 and 1, got {test_fraction}")
    if time_limit is not None and not (
        isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool) and 0 < time_limit < math.inf
    ):
        raise Img2NumError(f"time limit must be a positive number of seconds, got {time_limit!r}")
    _check_cv(cv, folds, val, test, options)
    started = time.perf_counter()
    settings = {"backend": backend} if epochs is None else {"backend": backend, "epochs": epochs}
    configs = {
        (name, s): TrainConfig(model=name, seed=s, **settings) for s in range(seed, seed + seeds) for name in models
    }
    task = read_task(data)
    reference_mse = _reference(task, reference_mse)
    check_replaceable(out_dir, overwrite, COMPARE_FOLDER, data_reads(data, val, test))
    if cv is not None:
        dataset = cv_data(data, options)
        rounds = fold_splits(dataset, folds, val_fraction, seed, options)
        check_replaceable(out_dir, overwrite, COMPARE_FOLDER, data_reads(dataset))
        return _cross_validate(dataset, rounds, configs, out_dir, overwrite, keep_runs, (started, time_limit), quiet, stream, backend)
    splits = _splits(data, val, test, val_fraction, test_fraction, seed, options)
    check_replaceable(out_dir, overwrite, COMPARE_FOLDER, data_reads(*splits.values()))
    # Measured once for every model and seed (their runs do not measure it again), warned once.
    near_copies = near_copy_record(splits, options, seed)
    if near_copies is not None and "warning" in near_copies:
        warnings.warn(near_copies["warning"], Img2NumWarning, stacklevel=2)
    say = progress_printer(stream, quiet)
    # One process runs on one backend: the faster one for the models, chosen before Keras loads.
    shape = splits["train"].image_shape
    select_backend(choose_backend(backend, [model_spec(name) for name in expand_models(models, shape)], shape))
    with atomic_folder(out_dir, overwrite, COMPARE_FOLDER) as folder:
        entries, test_predictions, histories = _train_all(
            splits, configs, folder, None, keep_runs, (started, time_limit, 0, len(configs)), say, quiet, stream
        )
        best_predictions = None if task is None else reference_predictions(task, splits["test"].x)
        if best_predictions is not None:
            entries.append(_reference_entry(splits, task))
            _score_groups(entries[-1], splits["test"], best_predictions)
        summary = {
            "data": {
                "source": splits["train"].source if isinstance(data, Dataset) else str(data),
                "task": task,
                "splits": {name: {"source": split.source, "samples": len(split)} for name, split in splits.items()},
                "image_shape": list(splits["train"].image_shape),
                "validation": splits.validation,
            },
            "reference_mse": reference_mse,
            "seeds": list(range(seed, seed + seeds)),
            "training": {k: v for k, v in configs[(models[0], seed)].to_dict().items() if k not in ("model", "seed")},
            "entries": entries,
            "leaderboard": leaderboard(entries, reference_mse),
        }
        if near_copies is not None:
            summary["data"]["near_copies"] = near_copies
        summary["best"] = next(row["name"] for row in summary["leaderboard"] if row["kind"] != "reference")
        if splits["test"].groups is not None:
            column = (splits.validation or {}).get("group_column", "group")
            summary["by_group"] = group_summary(entries, column, "test", summary["best"])
        _write_outputs(folder, summary, splits, test_predictions, best_predictions, histories)
    summary["folder"] = str(out_dir)
    return summary


def _train_all(splits, configs, folder: Path, fold: int | None, keep_runs: bool, clock: tuple, say, quiet: bool, stream):
    """Train every model on every seed, then fit the baselines, on one set of splits.

    Args:
        fold: The cross-validation fold these splits are (runs kept in `runs/fold-FOLD`), or None.
        clock: (started, time limit or None, trainings done before these, trainings in all),
            for the time shares.

    Returns:
        The entries (with `by_group` where the test split has groups), the test predictions of
        each model's first seed and of each baseline, and each model's histories.
    """
    started, time_limit, done_before, total = clock
    models = len({name for name, _ in configs})
    first_seed = min(s for _, s in configs)
    entries, test_predictions, histories = [], {}, {}
    test = splits["test"]
    for done, ((name, s), config) in enumerate(configs.items(), start=done_before):
        if time_limit is not None:
            config = replace(config, time_limit=_time_share(started, time_limit, total - done, models))
        where = f"seed {s}" if fold is None else f"fold {fold}, seed {s}"
        say(f"[{where}] training {name}" + ("" if time_limit is None else f" (time limit {config.time_limit:.0f} s)"))
        runs = folder / "runs" / ("" if fold is None else f"fold-{fold}")
        run_dir = runs / f"seed-{s}" / model_folder_name(name) if keep_runs else None
        with warnings.catch_warnings():
            # Warned again below with the model and seed, and shown in the report.
            warnings.simplefilter("ignore", Img2NumWarning)
            run = train(
                splits["train"], config, val=splits["val"], test=test, run_dir=run_dir, quiet=quiet, stream=stream,
                near_copies=False,
            )
        entries.append(_model_entry(name, s, run, run_dir and run_dir.relative_to(folder)))
        entries[-1]["intervals"] = coverage_record(run, test)
        if "warning" in run.config:
            warnings.warn(f"{name} ({where}): {run.config['warning']}", Img2NumWarning, stacklevel=3)
        histories.setdefault(name, []).append(run.history)
        if s == first_seed or test.groups is not None:
            predictions = run.predict(test.x, test.source)
            _score_groups(entries[-1], test, predictions)
            if s == first_seed:
                test_predictions[name] = predictions
    for name, entry, predictions in _baselines(splits):
        say(f"{name}: fitted in {entry['train_seconds']:.2f} s, test MSE {entry['metrics']['test']['mse']:.4g}")
        _score_groups(entry, test, predictions)
        entries.append(entry)
        test_predictions[name] = predictions
    return entries, test_predictions, histories


def _score_groups(entry: dict, test: Dataset, predictions) -> None:
    """Add each test group's metrics to `entry` (`by_group`) where the test split has groups."""
    if test.groups is not None:
        entry["by_group"] = metrics_by_group(test.y, predictions, test.groups)


def leaderboard(entries: list[dict], reference_mse: float | None = None) -> list[dict]:
    """One row per model or baseline: test metrics as mean and standard deviation over seeds.

    Args:
        entries: Per-seed results, each with `name`, `kind`, `metrics["test"]`, `parameters`,
            `train_seconds`, `epochs_run` and `best_epoch`.
        reference_mse: Best possible test MSE, for the `mse_over_reference` column, or None.

    Returns:
        Rows sorted by mean test MSE, the Bayes rule (kind "reference") last. Each holds `name`,
        `kind`, `seeds` and, for every metric M, `test_M` (mean) and `test_M_sd` (sample standard
        deviation over seeds, 0 for one), `mse_over_reference`, `parameters`, `train_seconds`,
        `epochs_run` and `best_epoch` (means over seeds, None where they do not apply).
    """
    grouped: dict[str, list[dict]] = {}
    for entry in entries:
        grouped.setdefault(entry["name"], []).append(entry)
    rows = []
    for name, group in grouped.items():
        row = {"name": name, "kind": group[0]["kind"], "seeds": len(group)}
        for metric in METRIC_NAMES:
            values = np.array([entry["metrics"]["test"][metric] for entry in group])
            row[f"test_{metric}"] = float(values.mean())
            row[f"test_{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["mse_over_reference"] = row["test_mse"] / reference_mse if reference_mse else None
        for key in ("parameters", "train_seconds", "epochs_run", "best_epoch"):
            values = [entry[key] for entry in group if entry[key] is not None]
            row[key] = float(np.mean(values)) if values else None
        rows.append(row)
    return sorted(rows, key=lambda row: (row["kind"] == "reference", row["test_mse"]))


def best_epoch(run) -> int:
    """The epoch with the lowest validation loss: `run.config["best_epoch"]`, else found in the history."""
    if run.config.get("best_epoch") is not None:
        return int(run.config["best_epoch"])
    return int(min(run.history, key=lambda row: row["val_loss"])["epoch"])


def _check_cv(cv: str | None, folds: int, val, test, options: DataConfig | None) -> None:
    if cv is None:
        return
    if cv not in CV_KINDS:
        raise Img2NumError(f"unknown cross-validation {cv!r}; known: {', '.join(CV_KINDS)}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise Img2NumError(f"the number of folds must be a whole number of at least 2, got {folds!r}")
    if options is None or options.group_column is None:
        raise Img2NumError("--cv groups needs a group column (--group-column NAME)")
    if val is not None or test is not None:
        raise Img2NumError("--cv groups draws the validation and test splits of every fold; leave out --val and --test")


def _cross_validate(data, rounds: list[Splits], configs: dict, out_dir, overwrite, keep_runs, clock, quiet, stream, backend) -> dict:
    """Train and score every model and baseline on each fold; write the cross-validation results."""
    from img2num import plots, report

    say = progress_printer(stream, quiet)
    shape = data.image_shape
    names = list(dict.fromkeys(name for name, _ in configs))
    select_backend(choose_backend(backend, [model_spec(name) for name in expand_models(names, shape)], shape))
    entries = []
    with atomic_folder(out_dir, overwrite, COMPARE_FOLDER) as folder:
        for index, splits in enumerate(rounds):
            fold = splits.validation["fold"]
            say(f"fold {fold} of {len(rounds)}: testing {', '.join(splits.validation['test_groups'])}")
            timing = (*clock, index * len(configs), len(rounds) * len(configs))
            found, _, _ = _train_all(splits, configs, folder, fold, keep_runs, timing, say, quiet, stream)
            entries += [{"fold": fold, **entry} for entry in found]
        training = {k: v for k, v in next(iter(configs.values())).to_dict().items() if k not in ("model", "seed")}
        summary = cv_results(data, rounds, entries, training, sorted({s for _, s in configs}))
        column = summary["cv"]["column"]
        plots.group_scores(summary["by_group"], folder / BY_GROUP_PICTURE, f"test MSE per {column}, each in its own fold")
        write_json(folder / RESULTS_FILE, summary)
        write_text(folder / LEADERBOARD_FILE, report.cv_table_markdown(summary))
        write_text(folder / REPORT_MD, report.cv_markdown(summary))
        write_text(folder / REPORT_HTML, report.cv_html(summary, folder))
    summary["folder"] = str(out_dir)
    return summary


def _reference(task: dict | None, reference_mse: float | None) -> float | None:
    """The caller's reference MSE, else the task's, else None."""
    if reference_mse is None and task is not None:
        reference_mse = task.get("reference_mse")
    if reference_mse is not None and not (isinstance(reference_mse, (int, float)) and 0 < reference_mse < math.inf):
        raise Img2NumError(f"the reference MSE must be a positive number, got {reference_mse!r}")
    return reference_mse


def _time_share(started: float, time_limit: float, trainings_left: int, models: int) -> float:
    """Seconds for the next training: an equal share of what is left of `time_limit` once the
    baselines, pictures and reports have their reserve (at least one second)."""
    reserve = time_reserve(time_limit) + COMPARE_SECONDS_PER_MODEL * models
    left = started + time_limit - reserve - time.perf_counter()
    return max(left / trainings_left, 1.0)


def _checked_models(models: Sequence[str] | None) -> list[str]:
    if models is None:
        return [spec.name for spec in list_models()]
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise Img2NumError("compare needs at least one model")
    for name in models:
        if name != AUTO_MODEL:
            check_model_name(name)
        if name in BASELINE_NAMES or name == REFERENCE_NAME:
            raise Img2NumError(f"model name {name!r} is taken by a baseline; rename the model")
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise Img2NumError(f"model {repeated[0]!r} is named twice; name each model once")
    return models


def _splits(
    data, val, test, val_fraction: float, test_fraction: float, seed: int, options: DataConfig | None = None
) -> Splits:
    options = replace(options or DataConfig(), test_fraction=test_fraction)
    splits = resolve_splits(data, val, test, val_fraction=val_fraction, seed=seed, options=options)
    if "test" not in splits:
        train = splits["train"]
        count = int(round(len(train) * test_fraction))
        if count < 1 or count > len(train) - 2:
            raise Img2NumError(
                f"{train.source}: {len(train)} training samples are too few to hold out a test share of "
                f"{test_fraction}; give a test set"
            )
        shares = hold_out(train, test_fraction, seed, options)
        splits["train"] = shares["train"]
        tested = shares["val"]
        splits["test"] = tested.take(np.arange(len(tested)), f"{train.source} (held-out test share)")
    if len(splits["train"]) < 2:
        raise Img2NumError(f"{splits['train'].source}: compare needs at least 2 training samples")
    # The baselines and pictures read pixels, so every split is decoded into memory.
    decoded = {name: splits[name].to_dataset() for name in ("train", "val", "test")}
    return Splits(decoded, validation=validation_record(decoded, splits.validation, options))


def _model_entry(name: str, seed: int, run, run_dir: Path | None) -> dict:
    entry = {
        "name": name,
        "kind": "model",
        "seed": seed,
        "metrics": run.metrics,
        "parameters": int(run.config["parameters"]),
        "train_seconds": float(run.config["train_seconds"]),
        "epochs_run": int(run.config.get("epochs_run", len(run.history))),
        "best_epoch": best_epoch(run),
        "run": None if run_dir is None else run_dir.as_posix(),
    }
    if "selection" in run.config:
        entry["chosen"] = run.config["selection"]["chosen"]
    if "warning" in run.config:
        entry["warning"] = run.config["warning"]
    return entry


def _baselines(splits: dict[str, Dataset]):
    """Fit each baseline on the training split; yield its name, entry and test predictions."""
    from img2num.baselines import MeanBaseline, RidgeBaseline

    train, val = splits["train"], splits["val"]
    for name, baseline in zip(BASELINE_NAMES, (MeanBaseline(), RidgeBaseline())):
        started = time.perf_counter()
        if isinstance(baseline, RidgeBaseline):
            baseline.fit(train.x, train.y, val.x, val.y)
        else:
            baseline.fit(train.x, train.y)
        seconds = time.perf_counter() - started
        predictions = {split: baseline.predict(data.x) for split, data in splits.items()}
        entry = {
            "name": name,
            "kind": "baseline",
            "seed": None,
            "metrics": {split: regression_metrics(data.y, predictions[split]) for split, data in splits.items()},
            "parameters": baseline.parameter_count(),
            "train_seconds": round(seconds, 3),
            "epochs_run": None,
            "best_epoch": None,
            "run": None,
        }
        if isinstance(baseline, RidgeBaseline):
            entry["alpha"] = baseline.alpha_
        yield name, entry, predictions["test"]


def _reference_entry(splits: dict[str, Dataset], task: dict) -> dict:
    metrics = {split: regression_metrics(data.y, reference_predictions(task, data.x)) for split, data in splits.items()}
    return {
        "name": REFERENCE_NAME,
        "kind": "reference",
        "seed": None,
        "metrics": metrics,
        "parameters": None,
        "train_seconds": None,
        "epochs_run": None,
        "best_epoch": None,
        "run": None,
    }


def _write_outputs(
    folder: Path, summary: dict, splits: dict[str, Dataset], predictions: dict, best: np.ndarray | None, histories: dict
) -> None:
    """Pictures (of the first seed; loss curves of every seed), then the tables and reports that show them."""
    from img2num import plots, report

    train, test = splits["train"], splits["test"]
    plots.sample_grid(train.x, train.y, folder / SAMPLES, title="training samples")
    plots.compare_loss_curves(
        {name: runs[0] for name, runs in histories.items()},
        folder / LOSS_CURVES,
        summary["reference_mse"],
        {name: runs[1:] for name, runs in histories.items()},
    )
    for name, predicted in predictions.items():
        file = model_folder_name(name)
        plots.diagnostics(test.y, predicted, folder / "pictures" / f"{file}-diagnostics.png", f"{name} on the test split", best)
        plots.worst_predictions(
            test.x, test.y, predicted, folder / "pictures" / f"{file}-worst.png", f"{name}: the 25 worst test predictions"
        )
    if "by_group" in summary:
        plots.group_scores(summary["by_group"], folder / BY_GROUP_PICTURE, f"test MSE per {summary['by_group']['column']}")
    write_json(folder / RESULTS_FILE, summary)
    write_text(folder / LEADERBOARD_FILE, report.leaderboard_markdown(summary))
    write_text(folder / LEADERBOARD_CSV, report.leaderboard_csv(summary["leaderboard"]))
    write_text(folder / REPORT_MD, report.compare_markdown(summary))
    write_text(folder / REPORT_HTML, report.compare_html(summary, folder))
