"""Optional engines: a missing one is a one-line error naming the extra to install."""

import sys

import pytest

from img2num.errors import Img2NumError
from img2num.extras import EXTRAS, require_extra


def test_missing_extra_names_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)  # an import of it now fails
    with pytest.raises(Img2NumError, match=r"GeoTIFF.*rasterio.*pip install 'img2num\[geo\]'"):
        require_extra("rasterio")


def test_installed_extra_is_returned():
    assert require_extra("onnx").__name__ == "onnx"
    assert {extra for extra, _ in EXTRAS.values()} == {"video", "geo", "onnx", "ray"}
