"""Reading one image file: formats, modes, EXIF orientation, 16-bit, multi-band TIFF, resizing,
and decoding many files on worker processes."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from img2num.data import decoding
from img2num.data.decoding import decode_files, probe_files
from img2num.data.conforming import BadImage, ImageSpec, conform
from img2num.data.images import probe, read_image

RGB = (np.arange(12 * 8 * 3) % 251).astype(np.uint8).reshape(12, 8, 3)


@pytest.mark.parametrize("ext, options", [("png", {}), ("bmp", {}), ("tif", {}), ("webp", {"lossless": True})])
def test_lossless_formats_read_exactly(tmp_path, ext, options):
    path = tmp_path / f"a.{ext}"
    Image.fromarray(RGB).save(path, **options)
    info = probe(path)
    assert (info.height, info.width, info.bands, info.dtype) == (12, 8, 3, "uint8")
    array = read_image(path)
    assert array.dtype == np.uint8 and np.array_equal(array, RGB)


def test_jpeg_grayscale_1_bit_and_rgba_images_read_as_expected(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.jpg", quality=95)
    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.shape == (12, 8, 3) and np.abs(jpeg.astype(int) - RGB).mean() < 8
    gray = RGB[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert probe(tmp_path / "g.png").bands == 1
    assert np.array_equal(read_image(tmp_path / "g.png")[..., 0], gray)
    Image.fromarray(gray > 100).save(tmp_path / "b.png")  # 1-bit
    assert set(np.unique(read_image(tmp_path / "b.png"))) == {0, 255}
    Image.fromarray(np.dstack([RGB, np.full((12, 8), 7, np.uint8)])).save(tmp_path / "a.png")  # RGBA
    assert np.array_equal(read_image(tmp_path / "a.png"), RGB)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB).save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(read_image(tmp_path / "o.png"), expected)
    info = probe(tmp_path / "o.png")
    assert (info.height, info.width) == expected.shape[:2]
    assert expected.shape[:2] == ((8, 12) if orientation >= 5 else (12, 8))
    # TIFF orientation goes through tifffile and the same transform.
    tifffile.imwrite(tmp_path / "o.tif", RGB, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    assert np.array_equal(read_image(tmp_path / "o.tif"), expected)


def test_16_bit_images_keep_their_depth(tmp_path):
    gray = (np.arange(10 * 6) * 1000 % 65535).astype(np.uint16).reshape(10, 6)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert probe(tmp_path / "g.png").dtype == "uint16"
    array = read_image(tmp_path / "g.png")
    assert array.dtype == np.uint16 and np.array_equal(array[..., 0], gray)
    colour = (np.arange(10 * 6 * 3) * 300 % 65535).astype(np.uint16).reshape(10, 6, 3)
    tifffile.imwrite(tmp_path / "c.tif", colour, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "c.tif"), colour)


@pytest.mark.parametrize("layout", ["contig", "separate", "pages"])
def test_multi_band_tiff_keeps_its_bands(tmp_path, layout):
    bands = np.random.default_rng(0).integers(0, 4000, (9, 7, 5)).astype(np.uint16)
    path = tmp_path / "m.tif"
    if layout == "contig":
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig")
    elif layout == "separate":
        tifffile.imwrite(path, np.moveaxis(bands, -1, 0), photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(path, np.moveaxis(bands, -1, 0))  # one page per band
    info = probe(path)
    assert (info.height, info.width, info.bands, info.dtype) == (9, 7, 5, "uint16")
    assert np.array_equal(read_image(path), bands)


def test_channels_convert_between_grayscale_and_colour():
    gray = conform(RGB, ImageSpec((12, 8), 1))
    expected = np.asarray(Image.fromarray(RGB).convert("L"))
    assert gray.shape == (12, 8, 1) and np.abs(gray[..., 0].astype(int) - expected).max() <= 1
    colour = conform(RGB[..., :1], ImageSpec((12, 8), 3))
    assert np.array_equal(colour, np.repeat(RGB[..., :1], 3, axis=2))
    with pytest.raises(BadImage, match="has 5 bands; the data set has 3"):
        conform(np.zeros((4, 4, 5), np.uint16), ImageSpec((4, 4), 3, "uint16"))


def test_resize_modes_stretch_crop_scale_or_refuse():
    image = np.zeros((20, 40, 1), np.uint8)
    image[:, 10:30] = 200  # the centre half is bright
    stretched = conform(image, ImageSpec((10, 10), 1, resize="stretch"))
    cropped = conform(image, ImageSpec((10, 10), 1, resize="crop"))
    assert stretched.shape == cropped.shape == (10, 10, 1)
    assert cropped.min() == 200  # the centre crop keeps only the bright middle
    assert stretched[:, 0].max() == 0 and stretched[:, 5].min() == 200
    scaled = conform(image, ImageSpec((10, 20), 1, resize="scale"))  # same aspect ratio
    assert scaled.shape == (10, 20, 1)
    with pytest.raises(BadImage, match="image is 20x40; bringing it to 10x10 would distort it; choose --resize"):
        conform(image, ImageSpec((10, 10), 1, resize="scale"))
    with pytest.raises(BadImage, match="image is 20x40; expected 10x20"):
        conform(image, ImageSpec((10, 20), 1, resize="none"))
    wide = conform(np.full((20, 40, 2), 1000, np.uint16), ImageSpec((5, 5), 2, "uint16", "crop"))
    assert wide.dtype == np.uint16 and wide.shape == (5, 5, 2) and (wide == 1000).all()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"just text, no pixels", "not an image file"),
        ("truncated", "unreadable or truncated image"),
        ("folder", "is a folder"),
    ],
)
def test_bad_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:400])
    elif content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImage, match=message):
        read_image(path)


def test_pillow_pixel_limit_is_respected(tmp_path, monkeypatch):
    Image.fromarray(RGB).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((12, 8, 5), np.uint16), photometric="minisblack", planarconfig="contig")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    for name in ("big.png", "big.tif"):
        with pytest.raises(BadImage, match=r"image is 12x8 = 96 pixels, over Pillow's limit of 50"):
            probe(tmp_path / name)
        with pytest.raises(BadImage, match="over Pillow's limit"):
            read_image(tmp_path / name)
    assert Image.MAX_IMAGE_PIXELS == 50


def test_worker_processes_decode_as_this_process_does(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    paths = []
    for index in range(40):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(paths[-1])
    (tmp_path / "bad.png").write_text("not an image")
    paths.insert(5, str(tmp_path / "bad.png"))
    spec = ImageSpec((8, 8), 3)
    alone = decode_files(paths, spec, workers=1, band_stats=True)
    monkeypatch.setattr(decoding, "PARALLEL_MIN_FILES", 1)
    pooled = decode_files(paths, spec, workers=2, band_stats=True)
    assert [problem for _, problem, _ in pooled] == [problem for _, problem, _ in alone]
    assert "not an image file" in pooled[5][1] and pooled[5][0] is None
    good = [i for i in range(len(paths)) if i != 5]
    assert all(np.array_equal(pooled[i][0], alone[i][0]) for i in good)
    assert np.allclose(pooled[0][2][0], alone[0][0].reshape(-1, 3).sum(axis=0))
    probed = probe_files(paths, workers=2)
    assert probed[0][0] == probe(paths[0]) and probed[0][1] is None
    assert probed[5][0] is None and "not an image file" in probed[5][1]


def test_bytes_decode_as_files_do(tmp_path):
    from img2num.data.images import read_image_bytes

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(RGB).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(RGB).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((6, 5, 5), np.uint16) + 7, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "o.tif", RGB, photometric="rgb", extratags=[(274, "H", 1, 8, True)])
    for name in ("o.jpg", "a.png", "b.tif", "o.tif"):
        from_file, from_bytes = read_image(tmp_path / name), read_image_bytes((tmp_path / name).read_bytes())
        assert from_bytes.dtype == from_file.dtype and np.array_equal(from_bytes, from_file), name
    assert read_image_bytes((tmp_path / "b.tif").read_bytes()).shape == (6, 5, 5)
    for content, message in [(b"", "empty file"), (b"not an image", "not an image file"),
                             ((tmp_path / "a.png").read_bytes()[:60], "truncated")]:
        with pytest.raises(BadImage, match=message):
            read_image_bytes(content)
    with pytest.raises(BadImage, match="over Pillow's limit of 50"):
        read_image_bytes((tmp_path / "a.png").read_bytes(), max_pixels=50)
    with pytest.raises(BadImage, match="over Pillow's limit of 20"):
        read_image_bytes((tmp_path / "b.tif").read_bytes(), max_pixels=20)


def test_other_bit_depths_keep_their_brightness_never_wrap(tmp_path):
    eight = ImageSpec((4, 4), 1, "uint8")
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 0.6, np.float32))
    # 40000 of 65535 is 155.6 of 255, not 40000 mod 256 = 64; 0.6 of white is 153, not black.
    assert (conform(read_image(tmp_path / "g16.png"), eight) == 156).all()
    assert (conform(read_image(tmp_path / "f.tif"), eight) == 153).all()
    assert (conform(read_image(tmp_path / "f.tif"), ImageSpec((4, 4), 1, "uint16")) == 39321).all()
    assert (conform(np.full((4, 4, 1), 200, np.uint8), ImageSpec((4, 4), 1, "uint16")) == 200 * 257).all()
    assert np.allclose(conform(np.full((4, 4, 1), 40000, np.uint16), ImageSpec((4, 4), 1, "float32")), 40000 / 65535)
    # Floating-point pixels outside black to white, or not numbers, cannot become 8-bit pixels.
    tifffile.imwrite(tmp_path / "hdr.tif", np.full((4, 4), 250.0, np.float32))
    with pytest.raises(BadImage, match="floating-point pixels range from 250 to 250; only 0 to 1 .* 8-bit"):
        conform(read_image(tmp_path / "hdr.tif"), eight)
    with pytest.raises(BadImage, match="holds NaN or infinite pixel values"):
        conform(np.full((4, 4, 1), np.nan, np.float32), ImageSpec((4, 4), 1, "float32"))
    with pytest.raises(BadImage, match="pixel values range from 0 to 300; the 8-bit pixels this run takes hold 0 to 255"):
        conform(np.arange(16, dtype=np.int64).reshape(4, 4, 1) * 20, eight)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_one_band_rule_at_every_bit_depth(tmp_path, dtype):
    bands = (np.random.default_rng(0).integers(0, 250, (5, 4, 4)) * (257 if dtype == np.uint16 else 1)).astype(dtype)
    # Four bands that are not RGBA keep all four, 8-bit as 16-bit.
    tifffile.imwrite(tmp_path / "m.tif", bands, photometric="minisblack", planarconfig="contig")
    assert probe(tmp_path / "m.tif").bands == 4 and np.array_equal(read_image(tmp_path / "m.tif"), bands)
    tifffile.imwrite(tmp_path / "x.tif", bands, photometric="rgb", extrasamples=[0])  # unspecified: data
    assert np.array_equal(read_image(tmp_path / "x.tif"), bands)
    # RGBA (the file marks the band as alpha) drops alpha, 16-bit as 8-bit; so does grey + alpha.
    tifffile.imwrite(tmp_path / "rgba.tif", bands, photometric="rgb")
    assert probe(tmp_path / "rgba.tif").bands == 3 and np.array_equal(read_image(tmp_path / "rgba.tif"), bands[..., :3])
    tifffile.imwrite(tmp_path / "la.tif", bands[..., :2], photometric="minisblack", extrasamples=[2])
    assert probe(tmp_path / "la.tif").bands == 1 and np.array_equal(read_image(tmp_path / "la.tif"), bands[..., :1])


def test_palette_image_of_greys_is_grey(tmp_path):
    grey = Image.new("P", (4, 3))
    grey.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    grey.putdata([0, 1, 2, 1] * 3)
    colour = grey.copy()
    colour.putpalette([0, 0, 0, 128, 0, 128, 255, 255, 255])
    for ext in ("png", "gif"):
        grey.save(tmp_path / f"g.{ext}")
        colour.save(tmp_path / f"c.{ext}")
        assert probe(tmp_path / f"g.{ext}").bands == 1 and probe(tmp_path / f"c.{ext}").bands == 3
        assert np.array_equal(read_image(tmp_path / f"g.{ext}")[..., 0], np.array([[0, 128, 255, 128]] * 3))
        assert read_image(tmp_path / f"c.{ext}").shape == (3, 4, 3)


def test_a_size_that_cannot_fit_is_refused_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((300, 200, 5), np.uint16), photometric="minisblack", planarconfig="contig")
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "turned.png", exif=_turned())

    def no_decoding(self):
        raise AssertionError("decoded a file its header already refused")

    spec = ImageSpec((12, 12), 3)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_decoding)
    with pytest.raises(BadImage, match="image is 300x200; expected 12x12"):
        read_image(tmp_path / "big.png", spec=spec)
    with pytest.raises(BadImage, match="has 5 bands; this data takes 3"):
        read_image(tmp_path / "big.tif", spec=spec)
    results = decode_files([str(tmp_path / "big.png")], spec)
    assert results[0][0] is None and "image is 300x200; expected 12x12" in results[0][1]
    monkeypatch.undo()
    # An EXIF-turned image is judged by its turned size: 8x12 stored, 12x8 shown.
    assert read_image(tmp_path / "turned.png", spec=ImageSpec((12, 8), 3)).shape == (12, 8, 3)


def _turned():
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()
