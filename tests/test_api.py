"""The public Python API: every name in `__all__` is the function or class its module defines, and
functions stay functions."""

import importlib
import inspect
import re
import tomllib
from pathlib import Path

import pytest

import img2num


def test_every_public_name_is_what_its_module_defines():
    assert img2num.__all__ == ["__version__", *img2num._API] and dir(img2num) == sorted(img2num.__all__)
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert img2num.__version__ == pyproject["project"]["version"]
    for name, module in img2num._API.items():
        value = getattr(img2num, name)
        assert value is getattr(importlib.import_module(module), name), name
        # Defined in that module or a module of its package, under its own name.
        assert value.__name__ == name and re.fullmatch(rf"{re.escape(module)}(\..+)?", value.__module__), name
        # Capitalised names are classes, the rest functions.
        assert (inspect.isclass(value) if name[0].isupper() else inspect.isfunction(value)), name
    assert issubclass(img2num.Img2NumError, Exception)
    with pytest.raises(AttributeError, match="module 'img2num' has no attribute 'nope'"):
        img2num.nope  # noqa: B018


def test_api_functions_are_not_shadowed_by_modules():
    import img2num.comparison  # noqa: F401
    import img2num.evaluation  # noqa: F401
    import img2num.prediction  # noqa: F401
    import img2num.training  # noqa: F401

    for name in ("train", "evaluate", "predict", "load_run", "run_recipe", "generate_points", "compare"):
        assert callable(getattr(img2num, name)), name
    assert img2num.train.__module__ == "img2num.training"
