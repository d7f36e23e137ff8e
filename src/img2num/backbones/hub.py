"""Hub presets without Keras: keras-hub's preset names, the hubs' local caches, the probe for
network before a download, and the download of a preset's config.json."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from img2num.backbones.preset_folder import is_preset

HUB_PREFIXES = ("hf://", "kaggle://")
# The network probe before a download, so that a machine without network fails in seconds.
NETWORK_TIMEOUT_S = 3.0


def registry() -> dict[str, str]:
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


def download_config(handle: str) -> Path:
    """Download a hub preset's config.json with the hub's own client, as keras-hub does (its
    module would import Keras); keras-hub finds the file in the same cache later."""
    if handle.startswith("hf://"):
        import huggingface_hub

        return Path(huggingface_hub.hf_hub_download(repo_id=handle.removeprefix("hf://"), filename="config.json"))
    import kagglehub

    return Path(kagglehub.model_download(handle.removeprefix("kaggle://"), "config.json"))


def hub_host(handle: str) -> str:
    """The host name of the hub that serves `handle` (HF_ENDPOINT or KAGGLE_API_ENDPOINT honoured)."""
    if handle.startswith("hf://"):
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    else:
        endpoint = os.environ.get("KAGGLE_API_ENDPOINT") or "https://www.kaggle.com"
    return urlparse(endpoint).hostname or endpoint


def reachable(host: str) -> bool:
    """Whether a TCP connection to `host` (port 443) opens within NETWORK_TIMEOUT_S."""
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S):
            return True
    except OSError:
        return False


def cached_folder(handle: str) -> Path | None:
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
    return folder if folder is not None and is_preset(folder) else None
