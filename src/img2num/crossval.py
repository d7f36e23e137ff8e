"""Results per group (a camera, a site, a day) across the models `compare` scores, and
cross-validation by whole groups: the folds, each fold's splits, and the summary over folds."""

from __future__ import annotations

import math

import numpy as np

from img2num.config import DataConfig
from img2num.data import Dataset, ImageFiles, Splits, hold_out, label_csv, read_image_table, validation_record
from img2num.errors import Img2NumError

CV_KINDS = ("groups",)
# Fewest groups cross-validation needs: one to test, one to validate, one to train on.
CV_MIN_GROUPS = 3


def group_folds(groups, folds: int, seed: int) -> list[list[str]]:
    """The test groups of each fold: one group each (leave-one-group-out) when there are at
    most `folds` groups, else `folds` folds of whole groups, drawn with `seed`, their sizes
    differing by at most one group. Every group is in exactly one fold.

    Args:
        groups: Each row's group (text).
        folds: The most folds wanted (at least 2).
        seed: Seed of the draw when groups are pooled into folds.

    Returns:
        The sorted group names of each fold, folds in order.
    """
    names = sorted(set(groups))
    if len(names) <= folds:
        return [[name] for name in names]
    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names[i] for i in part) for part in np.array_split(order, folds)]


def cv_data(data, options: DataConfig) -> Dataset:
    """The labelled images cross-validation splits, decoded, each with its group.

    Raises:
        Img2NumError: The data carry no groups (arrays, or no group column), or the label CSV
            has a split column (the folds draw every split).
    """
    csv_path = label_csv(data)
    if csv_path is not None:
        table = read_image_table(csv_path, options)
        if table.splits is not None:
            raise Img2NumError(
                f"{csv_path}: has a {options.split_column!r} column, but --cv groups draws every split itself; "
                "remove the column or leave out --cv"
            )
        data = table.data
    if not isinstance(data, (Dataset, ImageFiles)) or data.groups is None:
        source = getattr(data, "source", data)
        raise Img2NumError(f"{source}: --cv groups needs a label CSV with a group column (--group-column NAME)")
    return data.to_dataset() if isinstance(data, ImageFiles) else data


def fold_splits(data: Dataset, folds: int, val_fraction: float, seed: int, options: DataConfig) -> list[Splits]:
    """Train, validation and test splits of each fold: the fold's groups (`group_folds`) are
    the test split; validation is drawn by group from the rest, as `train` draws it.

    Args:
        data: Labelled images with `groups`.
        folds: The most folds (at least 2; at most one per group).
        val_fraction: Share of the remaining groups held out for validation.
        seed: Seed of the folds and of each validation draw.
        options: The group column's name (for messages and records), time column and gap.

    Returns:
        One `Splits` per fold; `validation` records the draw and `fold`, `folds` and
        `test_groups`.

    Raises:
        Img2NumError: Fewer than 3 groups, or a fold leaves fewer than 2 groups for training and
            validation.
    """
    column = options.group_column or "group"
    groups = np.asarray(data.groups, dtype=object)
    tested = group_folds(groups, folds, seed)
    count = sum(len(fold) for fold in tested)
    if count < CV_MIN_GROUPS:
        raise Img2NumError(
            f"{data.source}: {count} group{'s' if count != 1 else ''} in column {column!r} are too few to "
            f"cross-validate; each fold needs one to test, one to validate and one to train on ({CV_MIN_GROUPS} in all)"
        )
    if count - max(len(fold) for fold in tested) < 2:
        raise Img2NumError(
            f"{data.source}: {folds} folds of {count} groups leave a single group for training and validation; "
            "raise --folds"
        )
    result = []
    for index, names in enumerate(tested, start=1):
        held = np.isin(groups, names)
        rest = data.take(np.flatnonzero(~held), f"{data.source} (fold {index}: other groups)")
        test = data.take(np.flatnonzero(held), f"{data.source} (fold {index}: test {column} {', '.join(names)})")
        shares = hold_out(rest, val_fraction, seed, options)
        splits = {"train": shares["train"], "val": shares["val"], "test": test}
        record = validation_record(splits, shares.validation, options)
        record.update({"fold": index, "folds": len(tested), "test_groups": names})
        result.append(Splits(splits, validation=record))
    return result


def group_summary(entries: list[dict], column: str, split: str, order_by: str) -> dict:
    """Per-group results of every model and baseline, from each entry's `by_group` rows
    (`metrics_by_group`): a model trained on several seeds gets the mean over its seeds.

    Args:
        entries: Results of `compare` (per model and seed, per baseline; with cross-validation
            of every fold, each group scored in the fold that tested it).
        column: The group column's name.
        split: What the groups were scored on, for the record ("test").
        order_by: The entry whose MSE orders the groups, worst first (the best model).

    Returns:
        `column`, `split`, `groups` (names, worst first by `order_by`'s MSE), `samples` (per
        group) and `scores`: entry name -> group -> `mse`, `rmse`, `mae`, `r2` (R^2 the mean
        over seeds where it is defined, NaN where it is nowhere).
    """
    rows: dict[str, dict[str, list[dict]]] = {}
    samples: dict[str, int] = {}
    for entry in entries:
        for row in entry.get("by_group", []):
            rows.setdefault(entry["name"], {}).setdefault(row["group"], []).append(row)
            samples[row["group"]] = row["samples"]
    scores = {name: {group: _mean_metrics(found) for group, found in groups.items()} for name, groups in rows.items()}
    ordering = scores.get(order_by, {})
    order = sorted(samples, key=lambda group: (-ordering.get(group, {"mse": -math.inf})["mse"], group))
    return {
        "column": column,
        "split": split,
        "groups": order,
        "samples": {group: samples[group] for group in order},
        "scores": {name: {group: found[group] for group in order if group in found} for name, found in scores.items()},
    }


def cv_leaderboard(entries: list[dict], folds: int) -> list[dict]:
    """One row per model or baseline: test MSE and R^2 as mean and sample standard deviation
    over folds, each fold's value the mean over seeds.

    Args:
        entries: Results of every fold (each with `fold`, `name`, `kind`, `metrics["test"]`).
        folds: The number of folds.

    Returns:
        Rows sorted by mean test MSE, each with `name`, `kind`, `folds`, `fold_mse` and
        `fold_r2` (per fold, in order), `test_mse`, `test_mse_sd`, `test_r2` and `test_r2_sd`
        (R^2 over the folds where it is defined; NaN where it is nowhere).
    """
    per_fold: dict[str, dict[int, list[dict]]] = {}
    kinds = {}
    for entry in entries:
        per_fold.setdefault(entry["name"], {}).setdefault(entry["fold"], []).append(entry["metrics"]["test"])
        kinds[entry["name"]] = entry["kind"]
    rows = []
    for name, found in per_fold.items():
        means = [_mean_metrics(found[fold]) for fold in range(1, folds + 1) if fold in found]
        row = {"name": name, "kind": kinds[name], "folds": len(means)}
        for metric in ("mse", "r2"):
            values = np.array([m[metric] for m in means], dtype=np.float64)
            row[f"fold_{metric}"] = values.tolist()
            defined = values[np.isfinite(values)]
            row[f"test_{metric}"] = float(defined.mean()) if len(defined) else math.nan
            row[f"test_{metric}_sd"] = float(defined.std(ddof=1)) if len(defined) > 1 else 0.0
        rows.append(row)
    return sorted(rows, key=lambda row: row["test_mse"])


def cv_results(data: Dataset, rounds: list[Splits], entries: list[dict], training: dict, seeds: list[int]) -> dict:
    """What `compare(..., cv="groups")` returns and writes to `results.json`.

    Args:
        data: The images cross-validated.
        rounds: The splits of each fold (`fold_splits`).
        entries: Results of every fold, each with its `fold`.
        training: The settings every model trained with.
        seeds: The training seeds.

    Returns:
        `data`, `cv` (`kind`, `column`, and per fold its split sizes and how it was drawn),
        `seeds`, `training`, `entries`, `leaderboard` (`cv_leaderboard`), `best` and
        `by_group` (`group_summary`, each group scored in the fold that tested it).
    """
    column = rounds[0].validation.get("group_column", "group")
    folds = [{"splits": {name: len(split) for name, split in splits.items()}, **splits.validation} for splits in rounds]
    board = cv_leaderboard(entries, len(rounds))
    summary = {
        "data": {"source": data.source, "samples": len(data), "image_shape": list(data.image_shape)},
        "cv": {"kind": "groups", "column": column, "folds": folds},
        "seeds": seeds,
        "training": training,
        "entries": entries,
        "leaderboard": board,
        "best": board[0]["name"],
    }
    summary["by_group"] = group_summary(entries, column, "test", summary["best"])
    return summary


def _mean_metrics(rows: list[dict]) -> dict[str, float]:
    """The mean of each metric over `rows`; R^2 over the rows where it is defined."""
    result = {}
    for metric in ("mse", "rmse", "mae", "r2"):
        values = np.array([row[metric] for row in rows], dtype=np.float64)
        values = values[np.isfinite(values)] if metric == "r2" else values
        result[metric] = float(values.mean()) if len(values) else math.nan
    return result
