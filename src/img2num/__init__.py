"""img2num: predict a number from an image, from the command line or from Python.

Heavy modules (Keras, JAX, matplotlib) load on first use, so `import img2num` is instant.
"""

import importlib

# First of all: the version, and Keras' default backend (img2num.startup).
from img2num.startup import __version__

_API = {
    "Img2NumError": "img2num.errors",
    "PointsConfig": "img2num.config",
    "DustConfig": "img2num.config",
    "TrainConfig": "img2num.config",
    "DataConfig": "img2num.config",
    "Dataset": "img2num.data",
    "generate_points": "img2num.data",
    "generate_points_splits": "img2num.data",
    "write_points": "img2num.data",
    "generate_dust": "img2num.data",
    "write_dust": "img2num.data",
    "read_task": "img2num.data",
    "load_dataset": "img2num.data",
    "save_npz": "img2num.data",
    "ImageFiles": "img2num.data",
    "read_image": "img2num.data",
    "write_image_folder": "img2num.data",
    "list_models": "img2num.models",
    "create_model": "img2num.models",
    "register_model": "img2num.registry",
    "train": "img2num.training",
    "Run": "img2num.bundle",
    "load_run": "img2num.bundle",
    "predict": "img2num.prediction",
    "predict_files": "img2num.prediction",
    "predict_paths": "img2num.prediction",
    "write_predictions": "img2num.prediction",
    "predict_video": "img2num.video_prediction",
    "predict_map": "img2num.maps",
    "predict_ray": "img2num.ray_prediction",
    "predict_dataset": "img2num.ray_prediction",
    "export": "img2num.exporting",
    "evaluate": "img2num.evaluation",
    "regression_metrics": "img2num.metrics",
    "run_recipe": "img2num.recipe",
    "points_bayes_reference": "img2num.bayes",
    "dust_bayes_reference": "img2num.bayes",
    "points_bayes_intervals": "img2num.bayes",
    "dust_bayes_intervals": "img2num.bayes",
    "explain_images": "img2num.explain",
    "explain_paths": "img2num.explain",
    "integrated_gradients": "img2num.explain",
    "MeanBaseline": "img2num.baselines",
    "RidgeBaseline": "img2num.baselines",
    "compare": "img2num.comparison",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'img2num' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
