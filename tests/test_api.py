"""The public Python API: every name in `__all__` resolves, and functions stay functions."""

import img2num


def test_every_public_name_is_what_its_module_defines():
    for name in img2num.__all__:
        assert getattr(img2num, name) is not None, name


def test_api_functions_are_not_shadowed_by_modules():
    import img2num.comparison  # noqa: F401
    import img2num.evaluation  # noqa: F401
    import img2num.prediction  # noqa: F401
    import img2num.training  # noqa: F401

    for name in ("train", "evaluate", "predict", "load_run", "run_recipe", "generate_points", "compare"):
        assert callable(getattr(img2num, name)), name
    assert img2num.train.__module__ == "img2num.training"
