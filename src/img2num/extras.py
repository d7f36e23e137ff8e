"""Optional engines (PyAV, rasterio, ONNX Runtime, Ray): import one, or say in one line how to install it."""

import importlib
from types import ModuleType

from img2num.errors import Img2NumError

# Each importable module, with the extra that brings it and what img2num uses it for.
EXTRAS = {
    "av": ("video", "reading video files"),
    "rasterio": ("geo", "reading and writing GeoTIFF rasters"),
    "onnx": ("onnx", "ONNX export"),
    "onnxruntime": ("onnx", "the ONNX Runtime engine"),
    "jax2onnx": ("onnx", "ONNX export on the JAX backend"),
    "ray": ("ray", "the Ray engine"),
}


def require_extra(module: str) -> ModuleType:
    """Import an optional dependency, or raise a one-line error naming the install command.

    Args:
        module: A key of EXTRAS, for example "av" or "ray.data".

    Returns:
        The imported module.

    Raises:
        Img2NumError: The module is not installed.
    """
    extra, purpose = EXTRAS[module.split(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Img2NumError(
            f"{purpose} needs the {module.split('.')[0]} package: pip install 'img2num[{extra}]'"
        ) from None
