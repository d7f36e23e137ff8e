"""`evaluate`: score a trained run on labelled data and save the record in the run folder."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from img2num.errors import Img2NumError
from img2num.metrics import INTERVAL_NAMES, METRIC_NAMES, metrics_by_group, regression_metrics


def evaluation_record(run, data, options=None, interval: float | None = None, by: str | None = None) -> dict:
    """Score a trained run on labelled data: the record `evaluate` saves.

    Args:
        run: A `Run` or the path of a run folder.
        data: A labelled `Dataset` or `ImageFiles`, an `.npz` file, or a label CSV naming image
            files (or a folder holding one). Image files are decoded as the run's training
            images were.
        options: How a label CSV is read (`DataConfig`: column names, `skip_bad`, and
            `group_column`, which a label CSV must then have).
        interval: A level in (0, 1) such as 0.9 to also score the run's prediction intervals.
        by: A column of the label CSV (a camera, a site, a day) to also score each of its
            groups on; a row with an empty cell is bad, as elsewhere. A `Dataset` or
            `ImageFiles` that carries `groups` is scored by those.

    Returns:
        `data` (the source; a file by its resolved absolute path), `samples`, `mse`, `rmse`, `mae`, `r2`; with `interval` also
        `interval_level`, `coverage` (share of labels inside their interval) and `mean_width`;
        with `by` also `by_group`: `column` and `groups`, one row each (`group`, `samples` and
        the four metrics) worst MSE first (`metrics_by_group`); and, when rows were skipped,
        `skipped` (one message each).

    Raises:
        Img2NumError: The run or data cannot be read, the data has no labels, the images do
            not fit the model, or the level is bad or the run has no calibration; `by` names
            no column of the CSV, or the data are arrays (no columns).
    """
    from img2num.bundle import as_run
    from img2num.config import DataConfig
    from img2num.data import ImageFiles, as_dataset, label_csv, read_image_table, require_columns

    run = as_run(run)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails first
    skipped = []
    csv_path = label_csv(data)
    if by is not None:
        options = _by_options(options or DataConfig(), by, csv_path)
    if csv_path is not None:
        table = read_image_table(csv_path, options or DataConfig(), run.preprocessing.image_spec())
        data, skipped = table.data, table.skipped
    elif not isinstance(data, ImageFiles):
        data = as_dataset(data, require_labels=True)
    if by is not None and getattr(data, "groups", None) is None:
        raise Img2NumError(f"{data.source}: --by {by} needs a label CSV naming image files; arrays have no columns")
    require_columns(data, options or DataConfig())  # the data hold each row's group (`data.groups`)
    predictions = run.predict_data(data)
    record = {"data": _resolved_source(data.source), "samples": len(data), **regression_metrics(data.y, predictions)}
    if by is not None:
        record["by_group"] = {"column": by, "groups": metrics_by_group(data.y, predictions, data.groups)}
    if interval is not None:
        from img2num.intervals import interval_metrics

        record.update(interval_metrics(data.y, run.interval(predictions, interval), interval))
    if skipped:
        record["skipped"] = [row.message for row in skipped]
    return record


def evaluate(
    run, data, output=None, overwrite: bool = False, options=None, interval: float | None = None, by: str | None = None
) -> dict:
    """Score a trained run on labelled data, optionally saving the metrics as JSON.

    Args:
        run: A `Run` or the path of a run folder.
        data: Labelled data, as `evaluation_record` takes it.
        output: JSON file to write `evaluation_record` to, or None.
        overwrite: Replace an existing `output` file. Without it, an existing file is replaced
            only when it holds an earlier evaluation of the same data.
        options: How a label CSV is read (`DataConfig`: column names, `skip_bad`).
        interval: A level in (0, 1) such as 0.9 to also score the run's prediction intervals.
        by: A column of the label CSV to also score each of its groups on, as
            `evaluation_record` does.

    Returns:
        `mse`, `rmse`, `mae` and `r2`; with `interval` also `interval_level`, `coverage` and
        `mean_width`; with `by` also `by_group` (`evaluation_record`'s).

    Raises:
        Img2NumError: As `evaluation_record`; or `output` holds something else and `overwrite`
            is false (checked once the metrics are known).
    """
    record = evaluation_record(run, data, options, interval, by)
    if output is not None:
        save_evaluation(output, record, overwrite, [data] if isinstance(data, (str, Path)) else ())
    return {name: record[name] for name in (*METRIC_NAMES, *INTERVAL_NAMES, "by_group") if name in record}


def _by_options(options, by, csv_path):
    """`options` reading `by` as the group column; fails in one line when the CSV lacks it."""
    if not isinstance(by, str) or not by.strip():
        raise Img2NumError(f"--by needs a column name, got {by!r}")
    if options.group_column not in (None, by):
        raise Img2NumError(
            f"--by {by} and --group-column {options.group_column} name different columns; evaluate reads one, give one"
        )
    if csv_path is not None:
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as handle:
                header = [cell.strip() for cell in next(csv.reader(handle), [])]
        except (OSError, UnicodeDecodeError, csv.Error):
            header = []  # reading the table says what is wrong with the file
        if header and by not in header:
            raise Img2NumError(f"{csv_path}: has no column {by!r} to score by (found: {', '.join(header)}); choose one with --by")
    return replace(options, group_column=by)


def save_evaluation(output, record: dict, overwrite: bool = False, reads=()) -> Path:
    """Write an `evaluation_record` as JSON, replacing only an evaluation of the same data
    unless `overwrite`, and never the data itself (`record["data"]`) or other files in `reads`.

    Raises:
        Img2NumError: `output` holds something else and `overwrite` is false, or it is the data.
    """
    from img2num.io import check_replaceable_file, write_json

    check_replaceable_file(
        output, overwrite or _evaluation_of(output) == _same(record["data"]), [record["data"], *reads]
    )
    return write_json(output, record)


def evaluation_file(run_folder, source) -> Path:
    """Where `img2num evaluate` saves by default: `RUN/evaluations/NAME.json` after the data
    file's name, or `NAME-2.json`, `NAME-3.json`, ... when that name holds an evaluation of
    other data (two `labels.csv` files in different folders)."""
    folder, stem = Path(run_folder) / "evaluations", Path(source).stem
    number = 1
    while True:
        path = folder / (f"{stem}.json" if number == 1 else f"{stem}-{number}.json")
        if not path.exists() or _evaluation_of(path) == _same(source):
            return path
        number += 1


def _resolved_source(source: str) -> str:
    """A data file by its resolved absolute path, so that the same file named from two folders
    is one source and two files of one name are two; other sources as they are."""
    return os.path.realpath(source) if os.path.exists(source) else source


def _same(source) -> str:
    return os.path.normcase(_resolved_source(str(source)))


def _evaluation_of(path) -> str | None:
    """The data source recorded in an earlier evaluation file, if it is one (resolved). A
    relative path (recorded before sources were resolved) could be any folder's file: it is
    matched by no source, so that an older evaluation is never replaced by one of other data."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(data, str):
        return None
    return _same(data) if os.path.isabs(data) else f"relative:{data}"
