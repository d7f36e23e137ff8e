"""ONNX files from Keras models (Keras' own `model.export(format="onnx")`) and ONNX Runtime
sessions to run them: the two halves every ONNX path of img2num shares."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from img2num.errors import Img2NumError
from img2num.extras import require_extra
from img2num.io import atomic_path

# The name of the graph's one input and one output, so a caller needs no lookup.
INPUT_NAME = "pixels"
OUTPUT_NAME = "prediction"
# Pixel types an exported graph takes as they are; any other is brought to float32 first.
GRAPH_PIXEL_TYPES = ("uint8", "uint16", "float32")
# Images per ONNX Runtime call: bounds the memory of the intermediate tensors.
ORT_BATCH_SIZE = 256


def save_onnx(model, path: str | Path, input_shape, dtype: str, metadata: dict[str, str] | None = None) -> Path:
    """Write `model` (a Keras model with one input and one output) as an ONNX file, atomically,
    through Keras' own exporter (jax2onnx on JAX, torch.onnx on PyTorch); the input is named
    `INPUT_NAME` with a free batch size, the output `OUTPUT_NAME`.

    Args:
        model: The Keras model.
        path: The file to write.
        input_shape: One input's shape without the batch axis.
        dtype: The input's element type, such as "uint8" or "float32".
        metadata: Strings kept in the file's metadata_props.

    Returns:
        The file.

    Raises:
        Img2NumError: The exporter is missing or cannot convert the model (with its reason, one line).
    """
    import keras

    onnx = require_extra("onnx")
    if keras.backend.backend() == "jax":
        require_extra("jax2onnx")
    spec = keras.InputSpec(shape=(None, *input_shape), dtype=dtype, name=INPUT_NAME)
    with atomic_path(path) as tmp:
        try:
            model.export(str(tmp), format="onnx", verbose=False, input_signature=[spec])
        except Exception as error:  # the converters raise many types for an operation they lack
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            raise Img2NumError(f"cannot export {model.name} to ONNX on {keras.backend.backend()}: {reason}") from None
        graph = onnx.load(str(tmp))
        _channels_first_pools(graph, onnx)
        _rename_output(graph, OUTPUT_NAME)
        for key, value in (metadata or {}).items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.save(graph, str(tmp))
        # The exporter writes a large model's weights beside it (TMP.data); the graph saved
        # again holds them inline, so the side file is left over.
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return Path(path)


def _channels_first_pools(graph, onnx) -> None:
    """Rewrite each 4-d pooling node as a 2-d one over NCHW. jax2onnx (0.17) writes Keras'
    pooling on JAX (a reduce_window over NHWC with window 1xHxWx1) as a MaxPool whose input is
    the tensor unsqueezed to (1, 1, N, H, W, C) with a 4-d kernel: valid ONNX that ONNX Runtime
    refuses ("Unsupported pooling size"). The rewrite squeezes, transposes to NCHW, pools over
    H and W, and returns the same (1, 1, N, H', W', C) tensor, so it computes what JAX does."""
    nodes, axes = [], "img2num_pool_axes"
    for node in graph.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attributes.get("kernel_shape", []))
        if node.op_type not in ("MaxPool", "AveragePool") or len(kernel) != 4 or kernel[0] != 1 or kernel[3] != 1:
            nodes.append(node)
            continue
        strides = list(attributes.get("strides", [1, 1, 1, 1]))
        pads = list(attributes.get("pads", [0] * 8))
        attributes.update(kernel_shape=kernel[1:3], strides=strides[1:3], pads=pads[1:3] + pads[5:7])
        attributes.pop("dilations", None)
        names = [f"{node.name}_{step}" for step in ("nhwc", "nchw", "pooled", "pooled_nhwc")]
        nodes += [
            onnx.helper.make_node("Squeeze", [node.input[0], axes], [names[0]], name=f"{node.name}_squeeze"),
            onnx.helper.make_node("Transpose", [names[0]], [names[1]], perm=[0, 3, 1, 2], name=f"{node.name}_to_nchw"),
            onnx.helper.make_node(node.op_type, [names[1]], [names[2]], name=node.name, **attributes),
            onnx.helper.make_node("Transpose", [names[2]], [names[3]], perm=[0, 2, 3, 1], name=f"{node.name}_to_nhwc"),
            onnx.helper.make_node("Unsqueeze", [names[3], axes], [node.output[0]], name=f"{node.name}_unsqueeze"),
        ]
    if len(nodes) > len(graph.graph.node):
        graph.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 1], np.int64), axes))
        del graph.graph.node[:]
        graph.graph.node.extend(nodes)
        del graph.graph.value_info[:]  # recorded shapes of the old nodes; ONNX Runtime infers them again


def _rename_output(graph, name: str) -> None:
    """Give the graph's one output `name` (the exporters call it after its last operation)."""
    old = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [name if out == old else out for out in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    graph.graph.output[0].name = name


def ort_threads() -> int:
    """Threads of one ONNX Runtime session: the cores this process may use (os.sched_getaffinity),
    as Keras on JAX uses them; ONNX Runtime's own default also counts cores it may not run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def ort_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU for the ONNX file `path`.

    Args:
        path: The ONNX file.
        threads: Threads inside each operation (intra_op_num_threads); None: `ort_threads()`.

    Returns:
        An `onnxruntime.InferenceSession`.

    Raises:
        Img2NumError: onnxruntime is missing, or the file is not a graph it can run.
    """
    ort = require_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or ort_threads()
    # One operation at a time: the graphs are chains, and a second pool would fight the first for the cores.
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for a corrupt file
        raise Img2NumError(f"{path}: cannot load the ONNX graph ({' '.join(str(error).split())[:200]})") from None


def run_session(session, x: np.ndarray, batch_size: int = ORT_BATCH_SIZE) -> np.ndarray:
    """The session's one output on `x`, in batches of `batch_size`, concatenated."""
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: x[start : start + batch_size]})[0] for start in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, *_fixed_shape(session)), np.float32)


def _fixed_shape(session) -> tuple[int, ...]:
    return tuple(d for d in session.get_outputs()[0].shape[1:] if isinstance(d, int))
