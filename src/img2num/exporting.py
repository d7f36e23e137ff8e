"""A run as one ONNX graph from stored pixels to the number in the labels' units (the run's input
scaling, its model and the target un-scaling inside), with a JSON record beside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from img2num.bundle import MODEL_FILE, Run, as_run
from img2num.errors import Img2NumError
from img2num.io import check_replaceable_file, write_json
from img2num.onnx_runtime import INPUT_NAME, OUTPUT_NAME, save_onnx
from img2num.startup import __version__

FORMATS = ("onnx",)
# The graph `predict --engine onnx` keeps in the run folder, and its record (with the fingerprint).
CACHED_GRAPH = "model.onnx"
# Bump when what an exported graph holds changes: graphs kept in run folders are then made again.
GRAPH_VERSION = 1


def pixel_model(run: Run):
    """One Keras model from a batch of stored pixels (the run's `graph_dtype`, NHWC) to predictions
    (N,) in the labels' units: `Preprocessing.apply_in_graph`, the run's model, then the target
    scaling undone, as `Run.predict` does with NumPy around the model."""
    import keras
    from keras import ops

    preprocessing, scaling = run.preprocessing, run.target_scaling
    pixels = keras.Input(preprocessing.input_shape, dtype=preprocessing.graph_dtype, name=INPUT_NAME)
    output = run.model(preprocessing.apply_in_graph(pixels))
    prediction = ops.reshape(output, (-1,)) * float(scaling.std) + float(scaling.mean)
    return keras.Model(pixels, prediction, name=f"{run.model_name.replace(':', '_').replace('/', '_')}_pixels")


def fingerprint(run: Run) -> str:
    """What an exported graph of the run depends on, as a short hex key: the bytes of its
    `model.keras`, its preprocessing and target scaling, img2num's version and `GRAPH_VERSION`.

    Raises:
        Img2NumError: The run has no folder (it was never saved).
    """
    if run.path is None:
        raise Img2NumError("the run has no folder: save it before exporting it")
    digest = hashlib.sha256()
    with open(Path(run.path) / MODEL_FILE, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    text = json.dumps([run.preprocessing.to_dict(), run.target_scaling.to_dict(), __version__, GRAPH_VERSION], sort_keys=True)
    digest.update(text.encode())
    return digest.hexdigest()[:20]


def export_record(run: Run) -> dict:
    """The JSON written beside an exported graph: what it takes and what it gives."""
    preprocessing = run.preprocessing
    height, width, channels = preprocessing.input_shape
    options = run.config.get("data", {}).get("options") or {}
    return {
        "format": "onnx",
        "input": {"name": INPUT_NAME, "shape": [None, height, width, channels], "layout": "NHWC", "dtype": preprocessing.graph_dtype},
        "output": {"name": OUTPUT_NAME, "shape": [None], "dtype": "float32"},
        "image_size": [height, width],
        "channels": channels,
        "pixel_type": preprocessing.input_dtype,
        "resize": preprocessing.resize,
        "target": options.get("label_column") or "label",
        "units": run.config.get("units") if isinstance(run.config.get("units"), str) else None,
        "model": run.model_name,
        "run": str(run.path),
        "fingerprint": fingerprint(run),
        "img2num_version": __version__,
        "preprocessing": preprocessing.to_dict(),
        "target_scaling": run.target_scaling.to_dict(),
    }


def export(run: Run | str | Path, path: str | Path, format: str = "onnx", overwrite: bool = False) -> Path:
    """Export a run as one ONNX graph and a JSON record beside it (the same name, `.json`).

    The graph takes the pixels `img2num.predict` takes for the run (N, H, W, C) at the run's
    size and pixel type, and gives one float32 number per image in the labels' units.

    Args:
        run: A `Run` or the path of a run folder.
        path: The ONNX file to write.
        format: "onnx", the one format so far.
        overwrite: Replace an existing file (and its JSON).

    Returns:
        The ONNX file.

    Raises:
        Img2NumError: The format is unknown, a file exists and `overwrite` is false, the run
            cannot be read, or the model cannot be exported (with the reason).
    """
    if format not in FORMATS:
        raise Img2NumError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise Img2NumError(f"{path}: an ONNX file's name ends in .onnx")
    run = as_run(run)
    record_path = path.with_suffix(".json")
    reads = [Path(run.path) / MODEL_FILE] if run.path is not None else []
    for target in (path, record_path):
        check_replaceable_file(target, overwrite, reads)
    return _write(run, path, record_path)


def _write(run: Run, path: Path, record_path: Path) -> Path:
    record = export_record(run)
    metadata = {"img2num_version": __version__, "fingerprint": record["fingerprint"], "model": run.model_name}
    save_onnx(pixel_model(run), path, run.preprocessing.input_shape, run.preprocessing.graph_dtype, metadata)
    write_json(record_path, record)
    return path


def cached_graph(run: Run) -> Path:
    """The run's graph for `predict --engine onnx`: RUN/model.onnx when its record's fingerprint
    is the run's, else exported there now (loading the Keras model when `run` has none).

    Raises:
        Img2NumError: The run has no folder, or the model cannot be exported.
    """
    key = fingerprint(run)
    path = Path(run.path) / CACHED_GRAPH
    record_path = path.with_suffix(".json")
    try:
        known = json.loads(record_path.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        known = None
    if known == key and path.is_file():
        return path
    if run.model is None:
        run = as_run(run.path)
    try:
        return _write(run, path, record_path)
    except OSError as error:
        raise Img2NumError(
            f"{path}: cannot keep the ONNX graph in the run folder ({error.strerror or error}); "
            "export it elsewhere with `img2num export`, or predict with --engine keras"
        ) from None
