"""Held-out splits that keep correlated images apart: whole groups (a camera, a site, a source
photo) in one split each, and the latest shares in time for validation and test (docs/groups.md)."""

from __future__ import annotations

import numpy as np

from img2num.config import DataConfig, parse_gap
from img2num.data.table import time_values
from img2num.errors import Img2NumError

SPLIT_NAMES = ("train", "val", "test")


def require_columns(data, options: DataConfig) -> None:
    """Fail when a group or time column is asked of data that holds none (arrays, not a label CSV).

    Raises:
        Img2NumError: `options` names a group or time column and `data` carries no groups or times.
    """
    for column, values, option in (
        (options.group_column, getattr(data, "groups", None), "--group-column"),
        (options.time_column, getattr(data, "times", None), "--time-column"),
    ):
        if column is not None and values is None:
            raise Img2NumError(
                f"{data.source}: {option} {column} needs a label CSV naming image files; arrays have no columns"
            )


def drawn_by(data) -> str:
    """How `draw_held_out` draws from `data`: "random", "groups", "time" or "groups and time"."""
    grouped, timed = getattr(data, "groups", None) is not None, getattr(data, "times", None) is not None
    return {(False, False): "random", (True, False): "groups", (False, True): "time", (True, True): "groups and time"}[
        (grouped, timed)
    ]


def draw_held_out(
    data, val_fraction: float, test_fraction: float, seed: int, options: DataConfig | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Row indices of the training, validation and (with `test_fraction`) test splits of data
    that carry groups, times or both.

    With groups alone, a seeded draw of whole groups: `val_fraction` and `test_fraction` of the
    groups, rounded, at least one each. With times alone, the latest `test_fraction` of the rows
    (rounded to whole times, so that equal times stay in one split) is test, the next latest
    validation. With both, whole groups ordered by their earliest time, the latest to test and
    validation. `options.gap` then drops training rows within the gap before the earliest later
    time, and validation rows within it before the earliest test time.

    Args:
        data: A `Dataset` or `ImageFiles` with `groups`, `times` or both.
        val_fraction: Share for validation.
        test_fraction: Share for testing; 0 draws no test split.
        seed: Seed of the draw of groups (times need none).
        options: Column names (for messages) and the gap.

    Returns:
        The sorted row indices of each split drawn, and a record: `drawn` (`drawn_by`), `seed`
        for a seeded draw, `dropped_by_gap` (rows per split) with a gap.

    Raises:
        Img2NumError: Too few groups or distinct times to fill the splits, a gap that empties a
            split, or a gap with a unit on a column of plain numbers.
    """
    options = options or DataConfig()
    drawn = drawn_by(data)
    wanted = {"val": val_fraction, "test": test_fraction}
    if drawn == "random":
        raise ValueError("draw_held_out needs data with groups or times")
    times = None if data.times is None else time_values(data.times)
    if data.groups is None:
        assigned = _by_time(times[1], wanted, data.source, options.time_column or "time")
    else:
        assigned = _by_groups(np.asarray(data.groups), times, wanted, seed, data.source, options.group_column or "group")
    record = {"drawn": drawn} | ({"seed": seed} if drawn == "groups" else {})
    if options.gap is not None and times is not None:
        assigned, dropped = _apply_gap(assigned, times, options.gap, data.source, options.time_column)
        record["dropped_by_gap"] = dropped
    indices = {name: np.flatnonzero(assigned == name) for name in SPLIT_NAMES}
    return {name: rows for name, rows in indices.items() if len(rows)}, record


def _shares(units: int, wanted: dict[str, float], unit: str, source: str, column: str, rounded: bool = True) -> dict[str, int]:
    """Whole units (groups or distinct times) per held-out split: the shares rounded (or, with
    `rounded` false, one), at least one each; fails when no unit is left for training."""
    counts = {name: (max(1, int(round(units * share))) if rounded else 1) if share > 0 else 0 for name, share in wanted.items()}
    if units - sum(counts.values()) < 1:
        needs = f"at least 1, {counts['val']} and {counts['test']}" if counts["test"] else f"at least 1 and {counts['val']}"
        splits = "training, validation and test" if counts["test"] else "training and validation"
        raise Img2NumError(
            f"{source}: {units} {unit} in column {column!r} are too few: {splits} need {needs} {unit} "
            f"({1 + sum(counts.values())} in all); give more {unit} or lower the held-out shares"
        )
    return counts


def _by_groups(groups: np.ndarray, times, wanted: dict, seed: int, source: str, column: str) -> np.ndarray:
    # Sorted text: the draw does not depend on the order of the rows.
    names, codes = np.unique(groups, return_inverse=True)
    codes = codes.reshape(-1)
    counts = _shares(len(names), wanted, "groups", source, column)
    if times is None:
        order = np.random.default_rng(seed).permutation(len(names))
    else:
        # Whole groups by their earliest time (ties by name), the latest first.
        first = np.full(len(names), np.inf)
        np.minimum.at(first, codes, times[1])
        order = np.lexsort((np.arange(len(names)), first))[::-1]
    split_of = np.full(len(names), "train", dtype=object)
    split_of[order[: counts["test"]]] = "test"
    split_of[order[counts["test"] : counts["test"] + counts["val"]]] = "val"
    return split_of[codes]


def _by_time(values: np.ndarray, wanted: dict, source: str, column: str) -> np.ndarray:
    distinct, inverse, sizes = np.unique(values, return_inverse=True, return_counts=True)
    counts = _shares(len(distinct), wanted, "distinct times", source, column, rounded=False)
    # Row targets as a random split would draw them, met as closely as whole times allow.
    rows = {name: max(1, int(round(len(values) * share))) if share > 0 else 0 for name, share in wanted.items()}
    assigned_times = np.full(len(distinct), "train", dtype=object)
    end = len(distinct)
    for name in ("test", "val"):
        if not counts[name]:
            continue
        most = end - 1 - (counts["val"] if name == "test" else 0)  # a time left for each split still to fill
        taken = np.cumsum(sizes[end - most : end][::-1])
        blocks = 1 + int(np.argmin(np.abs(taken - rows[name])))
        assigned_times[end - blocks : end] = name
        end -= blocks
    return assigned_times[inverse.reshape(-1)]


def _apply_gap(assigned: np.ndarray, times, gap, source: str, column: str | None):
    kind, values = times
    amount, in_seconds = parse_gap(gap)
    if in_seconds and kind == "number":
        raise Img2NumError(
            f"{source}: gap {gap!r} has a unit but time column {column!r} holds plain numbers; "
            "give the gap in the column's own units, such as 6"
        )
    assigned = assigned.copy()
    dropped = {}
    for index, name in enumerate(SPLIT_NAMES[:-1]):
        later = np.isin(assigned, SPLIT_NAMES[index + 1 :])
        mine = assigned == name
        if not later.any() or not mine.any():
            continue
        # Within the gap before the earliest later time (or after it, where groups overlap in time).
        close = mine & (values > values[later].min() - amount)
        if close.sum() == mine.sum():
            split = "training" if name == "train" else "validation"
            raise Img2NumError(f"{source}: a gap of {gap} leaves no {split} rows; lower --gap")
        assigned[close] = "dropped"
        dropped[name] = int(close.sum())
    return assigned, dropped
