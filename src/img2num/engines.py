"""What runs a run's model when it predicts: Keras (the default) or ONNX Runtime on the run's
exported graph (`img2num.exporting`), behind the same `Run` interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.bundle import Run, load_run
from img2num.errors import Img2NumError
from img2num.exporting import cached_graph
from img2num.extras import require_extra
from img2num.onnx_runtime import ort_session, run_session

# The engines `predict` and `serve` take in this process (`--engine`).
ENGINES = ("keras", "onnx")


@dataclass
class OnnxRun(Run):
    """A run that predicts through ONNX Runtime on its exported graph, which holds the input
    scaling, the model and the target un-scaling; `model` is None unless the graph had to be
    exported. Intervals, metrics and the rest are the run's own."""

    session: object = None

    def predict(self, x: np.ndarray, source: str = "images", interval: float | None = None):
        """As `Run.predict`, through ONNX Runtime; images must have the run's pixel type (or one
        that converts to it without change: `Preprocessing.graph_input`)."""
        predictions = run_session(self.session, self.preprocessing.graph_input(x, source)).reshape(-1)
        return predictions if interval is None else self.interval(predictions, interval)

    def predict_splits(self, splits: dict) -> dict:
        """Predictions for each split, one `predict_data` per split."""
        return {name: self.predict_data(split) for name, split in splits.items()}


def engine_run(run: Run | str | Path, engine: str = "keras", threads: int | None = None) -> Run:
    """The run, ready to predict with `engine`.

    Args:
        run: A `Run` or the path of a run folder.
        engine: "keras", or "onnx" for ONNX Runtime on the graph kept in the run folder
            (exported on first use, again whenever the run's model changes).
        threads: ONNX Runtime's threads per operation; None uses every core this process may use.

    Returns:
        A `Run` (an `OnnxRun` for "onnx").

    Raises:
        Img2NumError: The engine is unknown or missing, the run cannot be read, or the model
            cannot be exported.
    """
    if engine not in ENGINES:
        raise Img2NumError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "keras":
        return run if isinstance(run, Run) and run.model is not None else load_run(getattr(run, "path", run))
    if isinstance(run, OnnxRun):
        return run
    require_extra("onnxruntime")
    base = run if isinstance(run, Run) else load_run(run, with_model=False)
    session = ort_session(cached_graph(base), threads)
    return OnnxRun(
        base.model, base.preprocessing, base.config, base.history, base.metrics, base.path,
        base.target_scaling, base.calibration, session=session,
    )
