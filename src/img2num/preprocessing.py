"""How raw images become model input (`Preprocessing`) and how standardized targets become
predictions in the labels' units (`TargetScaling`): what a run records so that it predicts
exactly as it was evaluated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from img2num.data import shape_text
from img2num.data.conforming import STORED_RESIZE_MODES, ImageSpec
from img2num.errors import Img2NumError


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input, and what input the model expects.

    Attributes:
        input_shape: (height, width, channels) the model takes.
        pixel_scale: Factor applied to pixel values: 1/255 for 8-bit images, 1/65535 for
            16-bit images, 1 for binary or floating-point images. On a run trained on 8- or
            16-bit pixels, 8- and 16-bit input is scaled image by image instead (a binary
            image of 0 and 1 by 1, others by their full scale; see `apply`), so that
            binary `.npz` arrays and 0/255 image files of the same pictures agree.
        band_offset: Per-band value subtracted before `band_scale` (the training mean of each
            band of multi-band images), or None to use `pixel_scale`.
        band_scale: Per-band factor (1 / the training standard deviation), or None.
        input_dtype: Pixel type images are brought to before scaling ("uint8", "uint16",
            "float32"), or None when unknown (runs from before image files).
        resize: How image files reach the input size: "none" (they must have it), "scale"
            (keeping the aspect ratio), "stretch", or "crop" (centre crop, then resize).
        input_kind: "arrays" when trained on `.npz` arrays, "images" for image files.
        bands: The 1-based bands kept of each image or raster (`--bands`), or None for all.
        source_bands: The band count of the images or GeoTIFF rasters trained on, when bands
            were chosen or chips were cut from rasters; None otherwise.
        pixel_size: Ground size (x, y) of a pixel of the GeoTIFF rasters trained on, in their
            CRS's units; None for plain images.
    """

    input_shape: tuple[int, int, int]
    pixel_scale: float = 1.0
    band_offset: tuple[float, ...] | None = None
    band_scale: tuple[float, ...] | None = None
    input_dtype: str | None = None
    resize: str = "none"
    input_kind: str = "arrays"
    bands: tuple[int, ...] | None = None
    source_bands: int | None = None
    pixel_size: tuple[float, float] | None = None

    @classmethod
    def for_images(cls, x: np.ndarray) -> Preprocessing:
        """The preprocessing that training arrays `x` (N, H, W, C) call for."""
        scale = 1.0
        if x.dtype == np.uint8 and x.max() > 1:
            scale = 1.0 / 255.0
        elif x.dtype == np.uint16 and x.max() > 1:
            scale = 1.0 / 65535.0
        return cls(tuple(int(d) for d in x.shape[1:]), scale, input_dtype=str(x.dtype))

    @classmethod
    def for_data(cls, data) -> Preprocessing:
        """The preprocessing that training data calls for: a `Dataset` of arrays (as
        `for_images`), or images read from files (a `Dataset` with paths, or `ImageFiles`).

        Image files are scaled by their pixel type (1/255 for 8-bit, 1/65535 for 16-bit, 1 for
        floating point); multi-band images (more than 3 bands) band by band to zero mean and
        unit variance over the training images.
        """
        spec = data.spec
        if spec is None:
            return cls.for_images(data.x)
        scale = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0}.get(spec.dtype, 1.0)
        offset = band_scale = None
        if spec.channels > 3:
            offset, band_scale = _band_scaling(data)
        return cls(
            spec.shape, scale, offset, band_scale, spec.dtype, spec.resize, "images",
            spec.bands, spec.source_bands, spec.pixel_size,
        )

    def image_spec(self):
        """The `ImageSpec` image files are decoded to for this model."""
        height, width, channels = self.input_shape
        return ImageSpec(
            (height, width), channels, self.input_dtype or "uint8", self.resize, self.bands, self.source_bands, self.pixel_size
        )

    def apply(self, x: np.ndarray, source: str = "images") -> np.ndarray:
        """Check the shape of images (N, H, W, C) and scale them to float32 model input.

        On a run trained on 8- or 16-bit pixels, 8- and 16-bit images become brightness 0-1,
        image by image: a binary image (only 0 and 1) by 1, any other by its full scale.

        Raises:
            Img2NumError: The images do not have the shape the model was trained on.
        """
        x = self._checked(x, source)
        if self.band_offset is not None:
            offset = np.asarray(self.band_offset, np.float32)
            return (x.astype(np.float32) - offset) * np.asarray(self.band_scale, np.float32)
        if self.input_dtype in _FULL_SCALE and x.dtype.name in _FULL_SCALE:
            return _brightness(x)
        return x.astype(np.float32) * np.float32(self.pixel_scale)

    def _checked(self, x: np.ndarray, source: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise Img2NumError(
                f"{source}: images are {shape_text(x.shape[1:])} (HxWxC); "
                f"this model takes {shape_text(self.input_shape)}"
            )
        return x

    @property
    def graph_dtype(self) -> str:
        """The pixel type an exported graph takes (`img2num.exporting`): the run's own when it is
        uint8, uint16 or float32, else float32 (as `apply` brings any other type to it)."""
        return self.input_dtype if self.input_dtype in ("uint8", "uint16", "float32") else "float32"

    def graph_input(self, x: np.ndarray, source: str = "images") -> np.ndarray:
        """Images (N, H, W, C) checked as `apply` checks them, in `graph_dtype`: what an exported
        graph takes to give `apply`'s model input.

        Raises:
            Img2NumError: The images do not have the model's shape, or their pixel type cannot
                become `graph_dtype` without changing what `apply` makes of them.
        """
        x = self._checked(x, source)
        dtype = self.graph_dtype
        if x.dtype.name == dtype or dtype == "float32" or (self.band_offset is not None and np.can_cast(x.dtype, dtype)):
            return x.astype(dtype, copy=False)
        raise Img2NumError(
            f"{source}: images of {x.dtype.name} pixels; the ONNX graph takes {dtype} pixels, as the run was "
            "trained on (convert them, or predict with --engine keras)"
        )

    def apply_in_graph(self, pixels):
        """`apply` as Keras operations on a symbolic batch of `graph_dtype` pixels, for a graph
        that takes pixels as they are stored (`img2num.exporting`)."""
        from keras import ops

        x = ops.cast(pixels, "float32")
        if self.band_offset is not None:
            return (x - np.asarray(self.band_offset, np.float32)) * np.asarray(self.band_scale, np.float32)
        if self.input_dtype in _FULL_SCALE and self.graph_dtype == self.input_dtype:
            binary = ops.max(ops.reshape(x, (-1, int(np.prod(self.input_shape)))), axis=1) <= 1.0
            scale = ops.where(binary, np.float32(1.0), np.float32(1.0 / _FULL_SCALE[self.input_dtype]))
            return x * ops.reshape(scale, (-1, 1, 1, 1))
        return x * np.float32(self.pixel_scale)

    def to_dict(self) -> dict:
        value = {"input_shape": list(self.input_shape), "pixel_scale": self.pixel_scale}
        if self.band_offset is not None:
            value.update(band_offset=list(self.band_offset), band_scale=list(self.band_scale))
        value.update(input_dtype=self.input_dtype, resize=self.resize, input_kind=self.input_kind)
        # Written only when known, so that runs of plain images keep the record they always had.
        for name in ("bands", "source_bands", "pixel_size"):
            if getattr(self, name) is not None:
                value[name] = list(getattr(self, name)) if name != "source_bands" else self.source_bands
        return value

    @classmethod
    def from_dict(cls, value: dict) -> Preprocessing:
        """Read `to_dict`'s output; keys added since the first release are optional."""
        offset, scale = value.get("band_offset"), value.get("band_scale")
        _check_choice("input_dtype", value.get("input_dtype"), _numeric_dtype, "a pixel type such as uint8, uint16 or float32")
        _check_choice("resize", value.get("resize", "none"), STORED_RESIZE_MODES.__contains__, ", ".join(STORED_RESIZE_MODES))
        _check_choice("input_kind", value.get("input_kind", "arrays"), ("arrays", "images").__contains__, "arrays or images")
        return cls(
            tuple(int(d) for d in value["input_shape"]),
            float(value["pixel_scale"]),
            None if offset is None else tuple(float(v) for v in offset),
            None if scale is None else tuple(float(v) for v in scale),
            value.get("input_dtype"),
            value.get("resize", "none"),
            value.get("input_kind", "arrays"),
            None if value.get("bands") is None else tuple(int(band) for band in value["bands"]),
            None if value.get("source_bands") is None else int(value["source_bands"]),
            None if value.get("pixel_size") is None else tuple(float(v) for v in value["pixel_size"]),
        )


# The brightest value of each integer pixel type.
_FULL_SCALE = {"uint8": 255.0, "uint16": 65535.0}


def _brightness(x: np.ndarray) -> np.ndarray:
    """8- and 16-bit images as brightness 0-1 (white is 1), image by image: by their full
    scale, except binary images (only 0 and 1, as `img2num generate` stores the points task in
    `.npz` files), whose 1 is white. So the same picture as 0/1 arrays or as 0/255 PNG files is
    the same model input, whichever of the two a run was trained on."""
    full = _FULL_SCALE[x.dtype.name]
    binary = x.reshape(len(x), -1).max(axis=1) <= 1 if x.size else np.zeros(len(x), bool)
    scale = np.where(binary, 1.0, 1.0 / full).astype(np.float32)
    return x.astype(np.float32) * scale.reshape((-1,) + (1,) * (x.ndim - 1))


def _check_choice(key: str, value, valid, expected: str) -> None:
    if value is not None and not (isinstance(value, str) and valid(value)):
        raise ValueError(f"unknown {key} {value!r}; expected {expected}")


def _numeric_dtype(name: str) -> bool:
    try:
        return np.dtype(name).kind in "uif"
    except TypeError:
        return False


def _band_scaling(data) -> tuple[tuple[float, ...], tuple[float, ...]]:
    sums = getattr(data, "band_sums", None)
    if sums is not None:
        pixels = len(data) * data.image_shape[0] * data.image_shape[1]
        mean = sums[:, 0].sum(axis=0) / pixels
        var = np.maximum(sums[:, 1].sum(axis=0) / pixels - mean**2, 0.0)
    else:
        flat = data.x.reshape(-1, data.x.shape[-1]).astype(np.float64)
        mean, var = flat.mean(axis=0), flat.var(axis=0)
    std = np.sqrt(var)
    # A constant band carries no information; scale 1 keeps it at 0 instead of dividing by 0.
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in scale)


@dataclass(frozen=True)
class TargetScaling:
    """How targets were standardized for training, and how predictions are restored.

    The model learns (y - mean) / std; its outputs are multiplied by `std` and shifted by
    `mean`. The identity (mean 0, std 1) stands for raw targets.

    Attributes:
        mean: Mean of the training targets.
        std: Standard deviation of the training targets (1 when they are all equal).
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def for_targets(cls, y: np.ndarray) -> TargetScaling:
        """The standardization of training targets `y`."""
        y = np.asarray(y, dtype=np.float64)
        std = float(y.std())
        return cls(float(y.mean()), std if std > 0 else 1.0)

    def scale(self, y: np.ndarray) -> np.ndarray:
        """Targets in model units, float32."""
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def restore(self, output: np.ndarray) -> np.ndarray:
        """Model outputs in the targets' original units, float32."""
        return (np.asarray(output, dtype=np.float64) * self.std + self.mean).astype(np.float32)

    @property
    def loss_factor(self) -> float:
        """Factor turning a squared error in model units into one in original units."""
        return self.std**2

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, value: dict) -> TargetScaling:
        scaling = cls(float(value["mean"]), float(value["std"]))
        if not (np.isfinite(scaling.mean) and np.isfinite(scaling.std) and scaling.std > 0):
            raise ValueError(f"mean and std must be finite with std > 0, got {value}")
        return scaling
