"""Batch prediction on Ray Data (`predict --engine ray`): images read by Ray's readers (local or
cloud paths), a run loaded once per actor, rows written as one CSV file or a Parquet folder."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.bundle import Run, as_run, load_run
from img2num.data import BadRow
from img2num.data.files import find_image_files
from img2num.data.conforming import BadImage, conform
from img2num.data.images import IMAGE_EXTENSIONS, read_image_bytes
from img2num.errors import Img2NumError
from img2num.extras import require_extra
from img2num.io import FolderKind, atomic_folder, check_replaceable_file
from img2num.prediction import PathPredictions, write_predictions

# Images per `map_batches` call: one model call each, as `inference.PREDICT_BATCH_SIZE`.
RAY_BATCH_SIZE = 256
# What `--overwrite` may replace with a Parquet output: a folder this module wrote.
PARQUET_FOLDER = FolderKind("predictions", "Parquet predictions folder")
# Output suffixes and the writer each chooses.
OUTPUT_SUFFIXES = (".csv", ".parquet")


class RunPredictor:
    """The callable class `map_batches` runs on each actor: the run is loaded once, in
    `__init__`, from its folder's files shipped through Ray's object store (`run_files`: one
    reference in a list, so the workers need no shared file system), then each batch is decoded
    and predicted as `predict` does.

    A batch holds `bytes` (from `ray.data.read_binary_files`) or `image` arrays (from
    `ray.data.read_images`), and `path` when the reader gave it. Each row comes back with its
    `prediction` (NaN for a bad image), `lower`/`upper` with an interval level, and `problem`:
    "" for a good image, else why it could not be used.
    """

    def __init__(self, run_files: list, interval: float | None = None):
        import ray

        folder = Path(tempfile.mkdtemp(prefix="img2num-run-"))
        # A reference in a list is not resolved by Ray before the call: fetched here, once per actor.
        try:
            for name, data in ray.get(run_files[0]).items():
                (folder / name).write_bytes(data)
            self.run = load_run(folder)
        finally:
            shutil.rmtree(folder)
        self.spec = self.run.preprocessing.image_spec()
        self.interval = interval

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        column = "bytes" if "bytes" in batch else "image"
        if column not in batch:
            raise Img2NumError(f"rows need a bytes or image column (read_binary_files or read_images); got {sorted(batch)}")
        images, good, problems = [], [], []
        for index, item in enumerate(batch[column]):
            try:
                if column == "bytes":
                    array = read_image_bytes(bytes(item), spec=self.spec)
                else:
                    array = np.asarray(item)
                    array = array[..., np.newaxis] if array.ndim == 2 else array
                images.append(conform(array, self.spec))
                good.append(index)
                problems.append("")
            except BadImage as error:
                problems.append(str(error))
        count = len(problems)
        out = {} if "path" not in batch else {"path": batch["path"]}
        out["prediction"] = np.full(count, np.nan, np.float32)
        if self.interval is not None:
            out["lower"], out["upper"] = np.full(count, np.nan, np.float32), np.full(count, np.nan, np.float32)
        if good:
            predictions = self.run.predict(np.stack(images), "images")
            out["prediction"][good] = predictions
            if self.interval is not None:
                interval = self.run.interval(predictions, self.interval)
                out["lower"][good], out["upper"][good] = interval.lower, interval.upper
        out["problem"] = np.array(problems, dtype=object)
        return out


def predict_dataset(
    run: Run | str | Path, dataset, workers: int | None = None, interval: float | None = None
):
    """Predict on a Ray Data `Dataset` of images, lazily, with a run loaded once per actor.

    Args:
        run: A `Run` saved in a folder, or the path of a run folder.
        dataset: A `ray.data.Dataset` with a `bytes` column (`ray.data.read_binary_files`, with
            `include_paths=True` to keep the paths) or an `image` column (`ray.data.read_images`);
            local or cloud paths (s3://, gs://, abfss://) through Ray's file systems.
        workers: Actors, each holding the run; None uses one per CPU of the cluster, but one.
        interval: A level in (0, 1) such as 0.9 to add `lower` and `upper` columns.

    Returns:
        A `ray.data.Dataset` of `path` (when the input had it), `prediction`, `lower`/`upper`
        with `interval`, and `problem` ("" for a good image, else why it could not be used;
        its prediction is NaN), in no particular order.

    Raises:
        Img2NumError: Ray is not installed, the run cannot be read, or the level is bad or the
            run has no calibration.
    """
    ray = require_extra("ray")
    run = as_run(run)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails here
    if run.path is None:
        raise Img2NumError("the run has no folder: save it first (Run.save), so that Ray's workers can load it")
    if workers is None:
        # One CPU stays for the readers, which Ray would otherwise leave waiting behind the actors.
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    return dataset.map_batches(
        RunPredictor,
        fn_constructor_args=([ray.put(_run_files(run.path))], interval),
        batch_size=RAY_BATCH_SIZE,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )


@dataclass(frozen=True)
class RayPredictions:
    """What `predict_ray` did.

    Attributes:
        count: Predictions made (and written, with an output).
        bad: The files that could not be used, each with its reason.
        output: The CSV file or Parquet folder written, or None.
        rows: Without an output, the predictions with their paths (and bounds), sorted as
            `predict_paths` sorts them; else None.
    """

    count: int
    bad: list[BadRow]
    output: Path | str | None
    rows: PathPredictions | None


def predict_ray(
    run: Run | str | Path,
    paths: list[str | Path],
    output: str | Path | None = None,
    overwrite: bool = False,
    address: str | None = None,
    workers: int | None = None,
    interval: float | None = None,
) -> RayPredictions:
    """Predict on image files, folders and cloud paths with Ray Data, as `img2num predict --engine ray`.

    Local files and folders are listed as `predict_paths` lists them (folders searched
    recursively, sorted; a missing path reported as bad); a cloud path (with `://`) is read by
    Ray's file systems, a folder's image files found by their extension. Bad images are
    reported and skipped, never stopping the rest.

    Args:
        run: A `Run` saved in a folder, or the path of a run folder.
        paths: Image files, folders and cloud paths.
        output: A .csv file (one file, rows sorted as `predict` sorts them), a .parquet folder
            (Ray's writer, one file per block, rows in no particular order; a cloud path too),
            or None to return the rows.
        overwrite: Replace an existing output (a Parquet folder only when img2num wrote it).
        address: The Ray cluster (`ray start --head` prints it, e.g. `10.0.0.5:6379`); None
            joins a running Ray of this process, else `RAY_ADDRESS`, else starts a local one.
        workers: Actors, each holding the run; None uses one per CPU of the cluster, but one.
        interval: A level in (0, 1) such as 0.9 to add lower and upper bounds.

    Returns:
        The count, the bad files and, without an output, the rows.

    Raises:
        Img2NumError: Ray is not installed, the output is neither .csv nor .parquet or cannot be
            written, the inputs hold a label CSV or .npz file, the run cannot be read, or the
            cluster cannot be reached.
    """
    paths = [str(path) for path in paths]
    _check_inputs(paths)
    if output is not None:
        _check_output(output, overwrite, paths)
    run = as_run(run)
    local = [path for path in paths if "://" not in path]
    files, bad = find_image_files(local)
    sources = files + [path for path in paths if "://" in path]
    if not sources:
        empty = PathPredictions(np.zeros(0, np.float32), [], None, None, [])
        return RayPredictions(0, bad, output, empty if output is None else None)
    ray, started = _connect(address)
    try:
        extensions = sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
        dataset = ray.data.read_binary_files(
            sources, include_paths=True, num_cpus=0,
            file_extensions=None if len(sources) == len(files) else extensions,
        )
        rows = predict_dataset(run, dataset, workers, interval)
        if output is not None and str(output).lower().endswith(".parquet"):
            count, more = _write_parquet(rows.materialize(), output, overwrite)
            return RayPredictions(count, bad + more, output, None)
        collected = _collect(rows, files, interval is not None)
        bad += collected.bad
        if output is not None and len(collected.predictions):
            write_predictions(output, collected.predictions, overwrite=overwrite, paths=collected.paths, bounds=collected.bounds, reads=paths)
        return RayPredictions(len(collected.predictions), bad, output, collected if output is None else None)
    finally:
        if started:
            ray.shutdown()


def _connect(address: str | None):
    """Ray, initialized: the running one of this process, or on `address`, or a new local one
    (quietly); and whether this call started it, so that the caller shuts it down."""
    ray = require_extra("ray")
    # Ray Data logs each execution's plan and progress; `predict` prints its own summary.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    ray.data.DataContext.get_current().print_on_execution_start = False
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise Img2NumError(f"cannot reach the Ray cluster at {address or os.environ.get('RAY_ADDRESS', 'a new local one')}: {error}") from None
    return ray, True


def _check_inputs(paths: list[str]) -> None:
    for path in paths:
        if Path(path).suffix.lower() in (".csv", ".npz"):
            raise Img2NumError(f"{path}: --engine ray predicts on image files, folders and cloud paths; a label CSV or .npz file goes through --engine keras")


def _check_output(output: str | Path, overwrite: bool, reads: list[str]) -> None:
    suffix = Path(str(output)).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise Img2NumError(f"{output}: expected a .csv file or a .parquet folder for --engine ray's output")
    if "://" in str(output):
        if suffix == ".csv":
            raise Img2NumError(f"{output}: a cloud output is written as Parquet by Ray's workers; name a .parquet folder")
    elif suffix == ".csv":
        check_replaceable_file(output, overwrite, reads)
    else:
        from img2num.io import check_replaceable

        check_replaceable(output, overwrite, PARQUET_FOLDER, reads)


def _run_files(folder: Path) -> dict[str, bytes]:
    """The run folder's own files (not its subfolders of evaluations or plots), by name."""
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir()) if path.is_file()}


def _collect(rows, files: list[str], bounded: bool) -> PathPredictions:
    """All rows in this process: the good ones sorted as `predict_paths` sorts (local files in
    their listed order, then cloud files by path), and the bad ones named."""
    order = {path: index for index, path in enumerate(files)}
    good, bad = [], []
    for batch in rows.iter_batches(batch_format="numpy", batch_size=None):
        for index, path in enumerate(batch["path"]):
            if batch["problem"][index]:
                bad.append(BadRow("", str(path), str(batch["problem"][index])))
            else:
                bounds = (batch["lower"][index], batch["upper"][index]) if bounded else ()
                good.append((order.get(path, len(order)), str(path), batch["prediction"][index], *bounds))
    good.sort(key=lambda row: row[:2])
    bad.sort(key=lambda row: (order.get(row.path, len(order)), row.path))
    column = [np.array([row[i] for row in good], np.float32) for i in (2, 3, 4)[: 3 if bounded else 1]]
    return PathPredictions(column[0], [row[1] for row in good], None, tuple(column[1:]) if bounded else None, bad)


def _write_parquet(rows, output: str | Path, overwrite: bool) -> tuple[int, list[BadRow]]:
    """Write the good rows of materialized `rows` with Ray's Parquet writer; return their count
    and the bad rows. A local folder is built under a temporary name and moved into place."""
    ray = require_extra("ray")
    problems = rows.filter(lambda row: bool(row["problem"])).take_all()
    bad = [BadRow("", str(row["path"]), str(row["problem"])) for row in problems]
    good = rows.filter(lambda row: not row["problem"]).drop_columns(["problem"])
    count = good.count()
    if "://" in str(output):
        mode = ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.ERROR
        good.write_parquet(str(output), mode=mode)
    else:
        with atomic_folder(output, overwrite, PARQUET_FOLDER) as folder:
            good.write_parquet(str(folder))
    return count, bad
