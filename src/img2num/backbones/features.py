"""What a pretrained backbone sees in an image, as one vector per image for a regression head:
each stage's output pooled to its mean and spread, beside the image's own band statistics;
computed once per image and kept on disk, keyed by image content, backbone and input size."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import numpy as np

from img2num.errors import Img2NumError
from img2num.inference import predict_inputs
from img2num.onnx_runtime import ort_session, run_session, save_onnx

# Bump when what a feature vector holds changes: older cached vectors are then not reused.
FEATURE_VERSION = 2
# Images with a shorter side are enlarged to it before the backbone, so that small objects reach
# the sizes ImageNet networks were trained to see (and a five-stage network keeps 4x4 pixels at
# its last stage). On the counting task's 48x48 images (400 training images, ridge head, Lite0),
# test MSE 0.90 at 64 pixels, 0.59 at 96, 0.41 at 128 (docs/backbones.md).
MIN_FEATURE_SIDE = 128
CACHE_VARIABLE = "IMG2NUM_FEATURES"
_OFF = ("", "0", "off", "no", "false")
# What computes feature vectors: "auto" (ONNX Runtime on the feature model's graph, exported by
# Keras' own exporter and kept beside the cached vectors, where onnxruntime is installed, the
# backend is PyTorch and at least ONNX_MIN_IMAGES images are to be computed; else Keras), "keras"
# or "onnx". Measured on 2 cores (counting, 2300 images of 48x48 px, Lite0 at 128 px, docs/export.md):
# PyTorch 54.1 s on Keras, 22.9 s on ONNX Runtime, export included; JAX 30 s on Keras, but 58 s on
# ONNX Runtime with jax2onnx's graph, after a 90 s export: so JAX keeps Keras.
ENGINE_VARIABLE = "IMG2NUM_FEATURE_ENGINE"
FEATURE_ENGINES = ("auto", "keras", "onnx")
ONNX_MIN_IMAGES = 256
GRAPH_FILE = "features.onnx"


def feature_cache_folder() -> Path | None:
    """The folder of cached feature vectors: IMG2NUM_FEATURES when set (None when it is empty,
    0, off, no or false), else `img2num/features` in the user's cache folder (XDG_CACHE_HOME,
    default ~/.cache). Deleting it is safe: features are computed again."""
    value = os.environ.get(CACHE_VARIABLE)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "img2num" / "features"


def feature_size(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The (height, width) images reach the backbone at: their own, or enlarged (keeping the
    aspect ratio) until the shorter side is `MIN_FEATURE_SIDE`."""
    height, width = int(image_shape[0]), int(image_shape[1])
    factor = max(1.0, MIN_FEATURE_SIDE / min(height, width))
    return round(height * factor), round(width * factor)


def check_image_size(image_shape: tuple[int, int, int], info) -> None:
    """Refuse images smaller than the backbone accepts.

    Raises:
        Img2NumError: The shorter side is below `info.min_size`.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if min(height, width) < info.min_size:
        raise Img2NumError(
            f"images of {height}x{width} pixels are smaller than backbone {info.spec!r} accepts "
            f"({info.min_size}x{info.min_size} at least); use --image-size {info.min_size} or larger, "
            "or a model trained from scratch"
        )


def feature_model(backbone, info, preprocessing):
    """A Keras model from the run's model input (images as `preprocessing` makes them) to one
    feature vector per image.

    The vector holds, for every stage in `info.stages`, the mean and the standard deviation of
    each channel over the image, and the mean and standard deviation of each of the image's own
    bands: global ImageNet features alone discard contrast, colour cast and small strokes, which
    the numbers people measure often depend on.

    Args:
        backbone: A keras-hub backbone with `pyramid_outputs`, weights loaded.
        info: Its `BackboneInfo` (normalisation, stages).
        preprocessing: The run's `Preprocessing`.

    Returns:
        An uncompiled `keras.Model`, frozen.
    """
    import keras

    from img2num.layers import BackboneInput, MeanStdPooling

    backbone.trainable = False
    stages = keras.Model(backbone.inputs, [backbone.pyramid_outputs[name] for name in info.stages], name="backbone_stages")
    inputs = keras.Input(preprocessing.input_shape)
    prepared = BackboneInput(
        scale=info.scale,
        offset=info.offset,
        pixel_range=pixel_range(preprocessing),
        size=feature_size(preprocessing.input_shape),
        name="backbone_input",
    )(inputs)
    pooled = [MeanStdPooling(name="input_statistics")(inputs)]
    outputs = stages(prepared)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    pooled += [MeanStdPooling(name=f"pool_{name}")(output) for name, output in zip(info.stages, outputs)]
    features = keras.layers.Concatenate(name="features")(pooled)
    model = keras.Model(inputs, features, name="backbone_features")
    model.trainable = False
    return model


def feature_groups(model, info) -> list[int]:
    """The sizes of a `feature_model`'s groups of features, in the vector's order: the input's
    band statistics, then each stage's pooled channels."""
    names = ["input_statistics"] + [f"pool_{name}" for name in info.stages]
    return [int(model.get_layer(name).output.shape[-1]) for name in names]


def pixel_range(preprocessing) -> float:
    """The value of a full-scale pixel in the run's model input: 1 for images scaled by their
    pixel type, 0 for bands standardized to zero mean and unit variance (then the backbone gets
    them as they are, already on the scale of its normalised input)."""
    return 0.0 if preprocessing.band_offset is not None else 1.0


def model_key(info, preprocessing) -> str:
    """What a cached vector depends on besides the image: the backbone's weights, the stages, the
    preprocessing, the size the backbone sees and the feature version, as a short hex key."""
    size = feature_size(preprocessing.input_shape)
    text = repr((FEATURE_VERSION, info.fingerprint, info.stages, info.scale, info.offset, preprocessing.to_dict(), size))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def image_keys(x: np.ndarray) -> np.ndarray:
    """One 16-byte content key per image of `x` (its pixels, type and shape)."""
    x = np.ascontiguousarray(x)
    head = f"{x.dtype.str}{x.shape[1:]}".encode()
    return np.array([hashlib.blake2b(head + row.tobytes(), digest_size=16).digest() for row in x], dtype="S16")


class FeatureCache:
    """Feature vectors on disk, one folder per backbone and preprocessing (`model_key`), in
    shards of (image keys, vectors) written atomically; a missing or unreadable shard is only a
    cache miss.

    Args:
        folder: The cache root (`feature_cache_folder()`), or None for no cache.
        key: The `model_key` of the feature model.
    """

    def __init__(self, folder: Path | None, key: str) -> None:
        self.folder = None if folder is None else Path(folder) / key
        self._known: dict[bytes, np.ndarray] | None = None

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Which of `keys` are cached: a boolean mask and the vectors (None where missing)."""
        known = self._load()
        found = [known.get(bytes(key)) for key in keys]
        return np.array([vector is not None for vector in found], bool), found

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Keep `vectors` under `keys`; a cache that cannot be written is skipped quietly."""
        if self.folder is None or len(keys) == 0:
            return
        known = self._load()
        known.update(zip((bytes(key) for key in keys), vectors))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"shard-{uuid.uuid4().hex}"
            partial = self.folder / f".{name}.partial.npz"
            np.savez(partial, keys=keys, vectors=vectors.astype(np.float32))
            os.replace(partial, self.folder / f"{name}.npz")
        except OSError:
            pass

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._known is None:
            self._known = {}
            if self.folder is not None and self.folder.is_dir():
                for shard in sorted(self.folder.glob("shard-*.npz")):
                    try:
                        with np.load(shard) as stored:
                            self._known.update(zip((bytes(k) for k in stored["keys"]), stored["vectors"]))
                    except (OSError, ValueError, KeyError):
                        continue
        return self._known


class ExtractionBudget:
    """A deadline for feature extraction, checked between pieces of `PIECE` images: once the
    measured seconds per image say that the images left cannot be done in time, extraction
    stops with one line, before the time is spent (`--model auto` then goes on without the
    backbone).

    Args:
        deadline: `time.perf_counter()` value by which the features must be ready.
        images: How many images are still to go through extraction (cached ones included; they
            are taken off as they are found).
    """

    PIECE = 256

    def __init__(self, deadline: float, images: int) -> None:
        self.deadline = deadline
        self.images_left = images
        self.seconds = 0.0
        self.computed = 0

    def found(self, count: int) -> None:
        """`count` images came from the cache."""
        self.images_left -= count

    def done(self, count: int, seconds: float) -> None:
        """`count` images were computed in `seconds`; raise when the rest cannot be in time.

        Raises:
            Img2NumError: The images left need more time than is left.
        """
        self.images_left -= count
        self.seconds += seconds
        self.computed += count
        need = self.seconds / max(self.computed, 1) * self.images_left
        left = self.deadline - time.perf_counter()
        if self.images_left > 0 and need > left:
            raise Img2NumError(
                f"feature extraction would need about {need:.0f} s more for {self.images_left} images "
                f"({self.computed / self.seconds:.1f} images/s) and {max(left, 0):.0f} s are left; "
                "raise --time-limit or name the backbone with --model"
            )


class FeatureEngine:
    """What runs the feature model on batches of model input: Keras (`predict_inputs`) or an
    ONNX Runtime session on its exported graph, chosen by `ENGINE_VARIABLE` and made on first use,
    so a split found whole in the cache costs no export.

    Args:
        model: The `feature_model`.
        folder: Where the exported graph is kept (the cache's folder for this model), or None.
        images: How many images the caller may compute at most.
    """

    def __init__(self, model, folder: Path | None, images: int) -> None:
        import importlib.util

        import keras

        choice = os.environ.get(ENGINE_VARIABLE, "auto").strip().lower() or "auto"
        if choice not in FEATURE_ENGINES:
            raise Img2NumError(f"{ENGINE_VARIABLE}={choice!r}: expected one of {', '.join(FEATURE_ENGINES)}")
        onnx_ready = importlib.util.find_spec("onnxruntime") is not None and keras.backend.backend() == "torch"
        self.name = "onnx" if choice == "onnx" or (choice == "auto" and onnx_ready and images >= ONNX_MIN_IMAGES) else "keras"
        self.required = choice == "onnx"
        self.model, self.folder, self._session = model, folder, None

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.name == "onnx" and self._session is None:
            self._session = self._open()
        if self.name == "keras":
            return predict_inputs(self.model, inputs)
        return run_session(self._session, np.asarray(inputs, np.float32))

    def _open(self):
        """The ONNX Runtime session, exporting the graph first where it is not kept; under "auto"
        a graph that cannot export leaves Keras to compute."""
        import tempfile

        try:
            folder = self.folder if self.folder is not None else Path(tempfile.mkdtemp(prefix="img2num-features-"))
            path = folder / GRAPH_FILE
            if not path.is_file():
                save_onnx(self.model, path, tuple(self.model.input_shape[1:]), "float32")
            return ort_session(path)
        except (Img2NumError, OSError):
            if self.required:
                raise
            self.name = "keras"
            return None


def extract_features(
    model, split, preprocessing, cache: FeatureCache | None = None, budget: ExtractionBudget | None = None,
    engine: FeatureEngine | None = None,
) -> tuple[np.ndarray, int]:
    """The feature vectors of every image of a split, from the cache where it has them.

    Args:
        model: The `feature_model`.
        split: A `Dataset` or `ImageFiles` (decoded chunk by chunk).
        preprocessing: The run's `Preprocessing`.
        cache: Where vectors are kept between calls and runs, or None.
        budget: The time the extraction may take, or None for no limit.
        engine: What runs `model` (a `FeatureEngine`), or None for Keras.

    Returns:
        The vectors (N, F) as float32, and how many images were computed (not cached).

    Raises:
        Img2NumError: The budget's deadline cannot be kept.
    """
    parts, computed = [], 0
    chunks = [split.x] if hasattr(split, "x") else split.chunks()
    piece = ExtractionBudget.PIECE if budget is not None else None
    for chunk in chunks:
        keys = image_keys(chunk) if cache is not None else None
        found, vectors = cache.lookup(keys) if cache is not None else (np.zeros(len(chunk), bool), [None] * len(chunk))
        missing = np.flatnonzero(~found)
        if budget is not None:
            budget.found(int(found.sum()))
        for start in range(0, len(missing), piece or max(len(missing), 1)):
            indices = missing[start : start + (piece or len(missing))]
            began = time.perf_counter()
            inputs = preprocessing.apply(np.asarray(chunk)[indices], split.source)
            fresh = engine(inputs) if engine is not None else predict_inputs(model, inputs)
            for index, vector in zip(indices, fresh):
                vectors[index] = vector
            if cache is not None:
                cache.add(keys[indices], fresh)
            computed += len(indices)
            if budget is not None:
                budget.done(len(indices), time.perf_counter() - began)
        parts.append(np.stack(vectors).astype(np.float32) if len(vectors) else np.zeros((0, model.output_shape[-1]), np.float32))
    return (np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)), computed
