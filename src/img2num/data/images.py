"""One image file in, one array out: reading (Pillow, tifffile for TIFF) and EXIF orientation;
the array brought to a data set's spec by `img2num.data.conforming`. Decoding many files on
every core is `img2num.data.decoding`.

Every function here reports a bad file by raising `BadImage` with the reason; callers add the
file's name and CSV row and decide whether to fail or skip.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2num.data.conforming import BadImage, ImageInfo, ImageSpec, fit_problem, resize_problem

# File names treated as images when a folder is searched.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm"}
)
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
# How a TIFF file starts (little- and big-endian, classic and BigTIFF): images read from bytes
# have no file name to tell.
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def probe(path: str | Path, max_pixels: int | None = None) -> ImageInfo:
    """Read an image file's header: size (after EXIF orientation), bands and pixel type.

    Raises:
        BadImage: The file is missing, not an image, or over the pixel limit.
    """
    path = Path(path)
    max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    _check_exists(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        header = _probe_tiff(path)
        if header is not None:
            _check_pixels(header[0].height, header[0].width, max_pixels)
            return header[0]
    with _open(path, max_pixels) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(0x0112, 1)
        except (OSError, ValueError, SyntaxError) as error:  # reading EXIF may read the whole file
            raise BadImage(f"unreadable or truncated image ({_reason(error)})") from None
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        return ImageInfo(height, width, *_pillow_bands(image))


def read_image(path: str | Path, max_pixels: int | None = None, spec: ImageSpec | None = None) -> np.ndarray:
    """Decode an image file into an array (H, W, C), EXIF orientation applied.

    Grayscale files (palette files whose colours are all grey among them) give one channel,
    colour files three; alpha is dropped, every other band of a multi-band TIFF file is kept.
    8-bit files give uint8, 16-bit files uint16, floating-point float32.

    Args:
        path: The image file.
        max_pixels: Pillow's pixel limit (default: `PIL.Image.MAX_IMAGE_PIXELS`).
        spec: When given, an image whose header already shows that it cannot be brought to the
            spec's size or bands is refused before its pixels are decoded.

    Raises:
        BadImage: The file is missing, not an image, truncated, unreadable, over the limit, or
            (with `spec`) of a size or band count that cannot fit.
    """
    path = Path(path)
    max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    _check_exists(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        array = _read_tiff(path, max_pixels, spec)
        if array is not None:
            return array
    return _read_pillow(path, max_pixels, spec)


def read_image_bytes(data: bytes, max_pixels: int | None = None, spec: ImageSpec | None = None) -> np.ndarray:
    """Decode an image held in memory (an upload) exactly as `read_image` decodes a file;
    TIFF is recognized by its first bytes instead of the file name. With `spec`, an image whose
    header shows a size or band (page) count that cannot fit is refused before decoding.

    Raises:
        BadImage: The bytes are empty, not an image, truncated, unreadable or over the limit,
            or (with `spec`) of a size or band count that cannot fit.
    """
    max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not data:
        raise BadImage("empty file")
    if data[:4] in _TIFF_SIGNATURES:
        array = _read_tiff(data, max_pixels, spec)
        if array is not None:
            return array
    return _read_pillow(data, max_pixels, spec)


def _read_pillow(source: Path | bytes, max_pixels: int | None, spec: ImageSpec | None = None) -> np.ndarray:
    with _open(source, max_pixels) as image:
        if spec is not None:
            # EXIF may turn the image; refuse only a size that fits neither way round.
            width, height = image.size
            problem = resize_problem(height, width, spec.size, spec.resize)
            if problem and resize_problem(width, height, spec.size, spec.resize):
                raise BadImage(problem)
        try:
            image.load()
            if image.getexif().get(0x0112, 1) != 1:  # transposing copies: only when needed
                image = ImageOps.exif_transpose(image)
        except (OSError, ValueError, SyntaxError) as error:
            raise BadImage(f"unreadable or truncated image ({_reason(error)})") from None
        return pil_to_array(image)


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A Pillow image as an array (H, W, C): see `read_image` for channels and types."""
    mode = image.mode
    if mode.startswith("I;16"):
        array = np.asarray(image).astype(np.uint16)
    elif mode == "I":
        array = np.asarray(image)
        fits = array.size == 0 or (array.min() >= 0 and array.max() <= 65535)
        array = array.astype(np.uint16 if fits else np.float32)
    elif mode == "F":
        array = np.asarray(image, dtype=np.float32)
    elif mode in ("L", "RGB"):
        array = np.asarray(image)
    elif _pillow_bands(image)[0] == 1:
        array = np.asarray(image.convert("L"))
    else:
        array = np.asarray(image.convert("RGB"))
    return array[..., np.newaxis] if array.ndim == 2 else array


def _pillow_bands(image: Image.Image) -> tuple[int, str]:
    """(bands, pixel type) of the array `pil_to_array` makes of `image`, from its header."""
    mode = image.mode
    if mode in _GRAY_MODES:
        return 1, "float32" if mode == "F" else "uint16" if mode.startswith("I") else "uint8"
    if mode in ("P", "PA") and _grey_palette(image):
        return 1, "uint8"
    return 3, "uint8"


def _grey_palette(image: Image.Image) -> bool:
    """Whether every colour of a palette image's palette is a grey (red = green = blue)."""
    palette = image.palette
    if palette is None:
        return False
    if palette.rawmode is None and palette.mode in ("RGB", "RGBA"):
        data = bytes(palette.palette)  # read with the header: no decoding
        step = len(palette.mode)
    else:
        data, step = bytes(image.getpalette("RGB") or b""), 3  # raw palettes: decodes (rare formats)
    colours = np.frombuffer(data[: len(data) // step * step], np.uint8).reshape(-1, step)
    return len(colours) > 0 and bool((colours[:, 0] == colours[:, 1]).all() and (colours[:, 1] == colours[:, 2]).all())


def _check_exists(path: Path) -> None:
    if path.is_dir():
        raise BadImage("is a folder, not an image file")
    if not path.exists():
        raise BadImage("no such file")


def _check_pixels(height: int, width: int, max_pixels: int | None) -> None:
    if max_pixels and height * width > max_pixels:
        raise BadImage(
            f"image is {height}x{width} = {height * width} pixels, over Pillow's limit of "
            f"{max_pixels} (PIL.Image.MAX_IMAGE_PIXELS)"
        )


class _open:
    """Open an image with Pillow, turning its errors into `BadImage`."""

    def __init__(self, path: Path, max_pixels: int | None) -> None:
        self.path, self.max_pixels = path, max_pixels

    def __enter__(self) -> Image.Image:
        limit = Image.MAX_IMAGE_PIXELS
        # Pillow's own check warns or raises by type; one check below gives one clear message.
        Image.MAX_IMAGE_PIXELS = None
        try:
            self.image = Image.open(_stream(self.path))
        except UnidentifiedImageError:
            raise BadImage("not an image file (Pillow cannot identify it)") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise BadImage(f"unreadable image ({_reason(error)})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        width, height = self.image.size
        try:
            _check_pixels(height, width, self.max_pixels)
        except BadImage:
            self.image.close()
            raise
        return self.image

    def __exit__(self, *exc) -> None:
        self.image.close()


def _probe_tiff(path: Path) -> tuple[ImageInfo, list[int]] | None:
    """A TIFF file's `ImageInfo` (alpha left out) and the indices of its alpha bands, from its
    header; None when tifffile cannot read it or its layout is not one image."""
    import tifffile

    try:
        with tifffile.TiffFile(_stream(path)) as tif:
            series, page = tif.series[0], tif.pages.first
            shape, axes, dtype = series.shape, series.axes, series.dtype
            orientation = _tiff_orientation(page)
            extras = [int(value) for value in getattr(page, "extrasamples", ()) or ()]
            samples = int(page.samplesperpixel)
    except Exception:  # Not a TIFF tifffile reads: let Pillow try and name the problem.
        return None
    layout = _tiff_layout(shape, axes)
    if layout is None:
        return None
    height, width, bands = layout
    if orientation in (5, 6, 7, 8):
        height, width = width, height
    # Alpha is what the file marks as alpha (ExtraSamples 1 or 2) at any bit depth; it is dropped
    # as for every other format. Every other band, an unspecified extra sample too, is kept.
    alpha = []
    if bands == samples:
        alpha = [samples - len(extras) + i for i, value in enumerate(extras) if value in (1, 2)]
    kind = "float32" if dtype.kind == "f" else "uint16" if dtype.itemsize > 1 or dtype.kind == "i" else "uint8"
    return ImageInfo(height, width, bands - len(alpha), kind), alpha


def _read_tiff(path: Path, max_pixels: int | None, spec: ImageSpec | None = None) -> np.ndarray | None:
    import tifffile

    header = _probe_tiff(path)
    if header is None:
        return None
    info, alpha = header
    _check_pixels(info.height, info.width, max_pixels)
    if spec is not None:
        problem = fit_problem(info, spec)
        if problem:
            raise BadImage(problem)
    try:
        with tifffile.TiffFile(_stream(path)) as tif:
            series = tif.series[0]
            array, axes = series.asarray(), series.axes
            orientation = _tiff_orientation(tif.pages.first)
    except Exception as error:  # tifffile raises many types for damaged or unusual files.
        try:
            with _open(path, max_pixels) as image:
                image.load()
                return pil_to_array(ImageOps.exif_transpose(image))
        except (BadImage, OSError, ValueError, SyntaxError):
            raise BadImage(f"unreadable or truncated TIFF image ({_reason(error)})") from None
    array = array.reshape(array.shape[-2:] if array.ndim == 2 else array.shape)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    elif not axes.endswith("S"):
        array = np.moveaxis(array, 0, -1)  # bands as pages or planes come first; put them last
    if alpha:
        array = np.delete(array, alpha, axis=-1)
    if array.dtype == bool:
        array = array.astype(np.uint8) * np.uint8(255)  # 1-bit: black and white, as Pillow reads it
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.itemsize > 1 or array.dtype.kind == "i":
        array = _int_to_uint16(array)
    else:
        array = array.astype(np.uint8)
    return _orient(array, orientation)


def _stream(source: Path | bytes):
    """What Pillow and tifffile open: a path, or a fresh stream over bytes held in memory."""
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _tiff_layout(shape, axes: str) -> tuple[int, int, int] | None:
    """(height, width, bands) of a TIFF series: bands last (YXS) or first (bands as planes or
    pages); None for anything else, such as a stack of colour images."""
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 3:
        if axes.endswith("S"):
            return shape[0], shape[1], shape[2]
        return shape[1], shape[2], shape[0]
    return None


def _tiff_orientation(page) -> int:
    tag = page.tags.get(274)
    return int(tag.value) if tag is not None else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply a TIFF/EXIF orientation tag (1-8) to an (H, W, C) array, as Pillow's exif_transpose."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _int_to_uint16(array: np.ndarray) -> np.ndarray:
    if array.size and (array.min() < 0 or array.max() > 65535):
        return array.astype(np.float32)
    return array.astype(np.uint16)


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
