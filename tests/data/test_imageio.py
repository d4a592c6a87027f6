"""Image decoding/encoding: round trips, 16-bit, metadata, and every refusal."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from srdistill.data.imageio import from_tensor, read_image, to_tensor, write_image
from srdistill.errors import ImageError, OutputExistsError

RNG = np.random.default_rng(0)
FORMATS = ["png", "jpg", "webp", "bmp", "tif"]
LOSSLESS = {"png", "tif", "bmp"}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def smooth(shape, dtype=np.uint8):
    """A gradient image: lossy codecs keep it within a few levels, unlike noise."""
    h, w = shape[:2]
    peak = np.iinfo(dtype).max
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [(xx / w), (yy / h), ((xx + yy) / (w + h))][: (shape[2] if len(shape) == 3 else 1)]
    arr = np.stack(planes, axis=2) * 0.8 + 0.1
    return np.round(arr * peak).astype(dtype)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_round_trip_8bit(tmp_path, ext, channels, with_alpha):
    pixels = smooth((20, 24, channels))
    alpha = smooth((20, 24, 1))[:, :, 0][::-1].copy() if with_alpha else None
    path = tmp_path / f"img.{ext}"
    notes = write_image(path, pixels, alpha=alpha, quality=95)
    got = read_image(path)
    assert got.bit_depth == 8 and got.pixels.dtype == np.uint8 and got.source == path
    webp_gray = ext == "webp" and channels == 1
    assert got.pixels.shape == (20, 24, 3 if webp_gray else channels)
    expected = np.repeat(pixels, 3, axis=2) if webp_gray else pixels
    if ext in LOSSLESS:
        np.testing.assert_array_equal(got.pixels, expected)
    else:
        assert np.abs(got.pixels.astype(int) - expected).mean() < 3
    keeps_alpha = ext in ("png", "tif", "webp")
    if with_alpha and keeps_alpha:
        assert np.abs(got.alpha.astype(int) - alpha).max() <= (0 if ext != "webp" else 3)
    else:
        assert got.alpha is None
    if with_alpha and not keeps_alpha:
        assert any("alpha channel dropped" in n for n in notes)


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("channels,with_alpha", [(1, False), (3, False), (3, True), (1, True)])
def test_16bit_kept_end_to_end(tmp_path, ext, channels, with_alpha):
    pixels = RNG.integers(0, 65536, size=(13, 17, channels), dtype=np.uint16)
    pixels[0, 0] = 257  # a value whose low byte differs from its high byte
    alpha = RNG.integers(0, 65536, size=(13, 17), dtype=np.uint16) if with_alpha else None
    path = tmp_path / f"deep.{ext}"
    notes = write_image(path, pixels, alpha=alpha)
    got = read_image(path)
    assert got.bit_depth == 16 and got.pixels.dtype == np.uint16
    if ext == "tif" and channels == 1 and with_alpha:
        # Stored as RGBA: no reader handles 16-bit gray+alpha TIFF.
        assert any("RGBA" in n for n in notes)
        np.testing.assert_array_equal(got.pixels, np.repeat(pixels, 3, axis=2))
    else:
        assert notes == ()
        np.testing.assert_array_equal(got.pixels, pixels)
    assert got.pixels.max() > 255
    if with_alpha:
        np.testing.assert_array_equal(got.alpha, alpha)


def test_16bit_reduced_for_8bit_formats(tmp_path):
    pixels = np.full((8, 8, 3), 65535, dtype=np.uint16)
    pixels[0, 0] = 257
    notes = write_image(tmp_path / "a.bmp", pixels)
    assert any("16-bit reduced to 8-bit" in n for n in notes)
    got = read_image(tmp_path / "a.bmp")
    assert got.bit_depth == 8 and got.pixels[1, 1, 0] == 255 and got.pixels[0, 0, 0] == 1


def test_written_16bit_files_are_valid_for_pillow(tmp_path):
    # Pillow reads our 16-bit colour PNG/TIFF (reducing to the high byte): the files are standard.
    pixels = RNG.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    for ext in ("png", "tif"):
        write_image(tmp_path / f"v.{ext}", pixels)
        with Image.open(tmp_path / f"v.{ext}") as im:
            assert im.mode == "RGB"
            reduced = np.asarray(im).astype(int)
        assert np.abs(reduced - (pixels >> 8)).max() <= 1


# ---- 16-bit colour files from other encoders, and what the 16-bit codecs refuse ---------------


def _filter_row(kind, row, prior, bpp):
    """PNG filters written out plainly, one byte at a time (spec section 9)."""
    out = []
    for i, byte in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((byte - pred) % 256)
    return bytes([kind] + out)


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _reference_png16(pixels, interlace):
    h, w, c = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
               (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)])
    stream = b""
    row_number = 0
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        prior = bytes(sub.shape[1] * c * 2)
        for row in sub:
            raw = row.astype(">u2").tobytes()
            stream += _filter_row(row_number % 5, raw, prior, 2 * c)  # cycle through all 5 filters
            prior = raw
            row_number += 1
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 1 if interlace else 0)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(stream))
            + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_png_from_an_independent_encoder(tmp_path, channels, interlace):
    # Every filter type and Adam7, written by the plain encoder above rather than by the codec.
    pixels = RNG.integers(0, 65536, size=(11, 13, channels), dtype=np.uint16)
    path = tmp_path / "ref.png"
    path.write_bytes(_reference_png16(pixels, interlace))
    got = read_image(path)
    assert got.bit_depth == 16
    colour = pixels[:, :, :3] if channels in (3, 4) else pixels[:, :, :1]
    np.testing.assert_array_equal(got.pixels, colour)
    if channels in (2, 4):
        np.testing.assert_array_equal(got.alpha, pixels[:, :, -1])
    else:
        assert got.alpha is None


@pytest.mark.parametrize("layout", ["big-endian strips", "tiles", "planar", "packbits rows", "lzw predictor"])
def test_16bit_tiff_layouts(tmp_path, layout):
    pixels = RNG.integers(0, 65536, size=(20, 32, 3), dtype=np.uint16)
    options = {
        "big-endian strips": {"byteorder": ">", "rowsperstrip": 7},
        "tiles": {"tile": (16, 16)},
        "planar": {"planarconfig": "separate"},
        "packbits rows": {"compression": "packbits", "rowsperstrip": 1},
        "lzw predictor": {"compression": "lzw", "predictor": True},
    }[layout]
    path = tmp_path / "layout.tif"
    tifffile.imwrite(path, pixels.transpose(2, 0, 1) if layout == "planar" else pixels, photometric="rgb",
                     metadata=None, **options)
    got = read_image(path)
    assert got.bit_depth == 16 and got.mode == "RGB;16"
    np.testing.assert_array_equal(got.pixels, pixels)


def test_unsupported_16bit_tiff_refused(tmp_path):
    # Pillow opens a 16-bit CMYK TIFF; its four samples must not pass for RGBA.
    path = tmp_path / "cmyk.tif"
    tifffile.imwrite(path, RNG.integers(0, 65536, size=(6, 7, 4), dtype=np.uint16), photometric="separated",
                     metadata=None)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    message = one_line(exc)
    assert "cmyk.tif" in message and "photometric 5" in message and "convert it" in message


def test_16bit_colour_without_the_extra_names_it(tmp_path, monkeypatch):
    deep = RNG.integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", deep)
    write_image(tmp_path / "deep.tif", deep)
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as if not installed: the import fails
    for name in ("deep.png", "deep.tif"):
        with pytest.raises(ImageError) as exc:
            read_image(tmp_path / name)
        message = one_line(exc)
        assert name in message and "srdistill[codecs16]" in message
    with pytest.raises(ImageError) as exc:
        write_image(tmp_path / "out.png", deep)
    assert "out.png" in one_line(exc) and "srdistill[codecs16]" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.png", "deep.tif"]  # no leftovers
    # 8-bit colour and 16-bit gray need only Pillow.
    write_image(tmp_path / "gray.png", deep[:, :, :1])
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png").pixels, deep[:, :, :1])


def test_16bit_tiff_deflate_bomb_refused(tmp_path):
    # A 10x10 header whose one strip inflates to 50 MB: tifffile alone would inflate all of it;
    # with imagecodecs the strip decodes into a buffer of the declared size and is refused.
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((10, 10, 3), np.uint16), photometric="rgb", compression="zlib",
                     metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        offset_tag, count_tag = tags["StripOffsets"], tags["StripByteCounts"]
    bomb = zlib.compress(bytes(50_000_000), 9)
    layout = {3: "<H", 4: "<I"}
    struct.pack_into(layout[offset_tag.dtype], data, offset_tag.valueoffset, len(data))
    struct.pack_into(layout[count_tag.dtype], data, count_tag.valueoffset, len(bomb))
    path.write_bytes(bytes(data) + bomb)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "bomb.tif" in one_line(exc) and "corrupt" in str(exc.value)


# ---- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(tmp_path, orientation):
    pixels = RNG.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestMake"
    path = tmp_path / "o.png"
    Image.fromarray(pixels).save(path, exif=exif)
    got = read_image(path)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(got.pixels, expected)
    carried = Image.Exif()
    carried.load(got.exif)
    assert carried.get(0x0112, 1) == 1 and carried[0x010F] == "TestMake"


def test_jpeg_orientation_6_and_metadata_carried(tmp_path):
    pixels = smooth((30, 50, 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "camera.jpg"
    Image.fromarray(pixels).save(src, exif=exif, icc_profile=SRGB, dpi=(300, 300), quality=95)
    got = read_image(src)
    assert got.pixels.shape == (50, 30, 3)  # rotated 90 degrees clockwise
    assert np.abs(got.pixels.astype(int) - np.rot90(pixels, -1)).mean() < 3
    assert got.icc_profile == SRGB and got.dpi == (300.0, 300.0)
    assert any("orientation 6" in n for n in got.notes)
    for ext in ("png", "jpg", "tif", "webp"):
        out = tmp_path / f"out.{ext}"
        write_image(out, got.pixels, like=got)
        back = read_image(out)
        assert back.pixels.shape == (50, 30, 3), ext  # not rotated a second time
        assert back.icc_profile == SRGB, ext
        if ext != "webp":
            assert back.dpi == (300.0, 300.0), ext


def test_metadata_carried_into_16bit_png(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Deep"
    src = tmp_path / "src.png"
    Image.fromarray(smooth((8, 9, 3))).save(src, exif=exif, icc_profile=SRGB, dpi=(72, 72))
    like = read_image(src)
    assert like.dpi == (72.0, 72.0)  # PNG's dots-per-metre rounding undone
    deep = RNG.integers(0, 65536, size=(8, 9, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", deep, like=like)
    back = read_image(tmp_path / "deep.png")
    assert back.icc_profile == SRGB and back.dpi == (72.0, 72.0)
    tags = Image.Exif()
    tags.load(back.exif)
    assert tags[0x010F] == "Deep"


def test_rgb_icc_not_put_on_gray_output(tmp_path):
    src = tmp_path / "src.png"
    Image.fromarray(smooth((8, 8, 3))).save(src, icc_profile=SRGB)
    notes = write_image(tmp_path / "gray.png", smooth((8, 8, 1)), like=read_image(src))
    assert any("ICC profile dropped" in n for n in notes)
    assert read_image(tmp_path / "gray.png").icc_profile is None


# ---- modes ------------------------------------------------------------------------------------


def test_palette_with_transparency_gives_rgba(tmp_path):
    palette_image = Image.new("P", (4, 3))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putdata([0, 1, 0, 1] * 3)
    palette_image.save(tmp_path / "q.png")
    palette_image.save(tmp_path / "p.png", transparency=1)
    got = read_image(tmp_path / "p.png")
    assert got.mode == "P" and got.pixels.shape == (3, 4, 3)
    np.testing.assert_array_equal(got.alpha[0], [255, 0, 255, 0])
    np.testing.assert_array_equal(got.pixels[0, 0], [255, 0, 0])
    plain = read_image(tmp_path / "q.png")
    assert plain.alpha is None and plain.pixels.shape == (3, 4, 3)


def test_cmyk_jpeg_converted_with_note(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    got = read_image(tmp_path / "c.jpg")
    assert got.pixels.shape == (6, 8, 3) and got.mode == "CMYK"
    assert any("CMYK converted to RGB" in n for n in got.notes)
    assert got.pixels[..., 0].mean() > 200 and got.pixels[..., 1].mean() < 50  # red


def test_gray_and_bilevel(tmp_path):
    Image.new("1", (5, 4), 1).save(tmp_path / "b.png")
    got = read_image(tmp_path / "b.png")
    assert got.pixels.shape == (4, 5, 1) and got.pixels.max() == 255
    assert any("1-bit" in n for n in got.notes)


def test_multiframe_tiff_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 20)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    got = read_image(tmp_path / "m.tif")
    assert got.pixels.max() == 10 and any("first of 2 frames" in n for n in got.notes)


# ---- refusals ---------------------------------------------------------------------------------


def test_pixel_limit_checked_from_header(tmp_path):
    default_limit = Image.MAX_IMAGE_PIXELS
    Image.fromarray(smooth((64, 64, 3))).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "big.png", max_pixels=1000)
    message = one_line(exc)
    assert "64x64" in message and "(max_pixels)" in message and "0.001 megapixels" in message
    assert read_image(tmp_path / "big.png", max_pixels=4096).width == 64
    assert Image.MAX_IMAGE_PIXELS == default_limit  # Pillow's process-wide limit left as it was


def test_declared_huge_png_refused_without_decoding(tmp_path):
    # 100000 x 100000 declared, a few bytes of data: refused from the header alone.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 10))
            + _png_chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "bomb.png")
    assert "100000x100000" in one_line(exc)


@pytest.mark.parametrize("kind", ["png", "jpg", "png16", "tif16"])
def test_truncated_files_refused(tmp_path, kind):
    path = tmp_path / ("t.jpg" if kind == "jpg" else "t.tif" if kind == "tif16" else "t.png")
    if kind in ("png16", "tif16"):
        write_image(path, RNG.integers(0, 65536, size=(40, 40, 3), dtype=np.uint16))
    else:
        Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "truncated" in one_line(exc) and path.name in str(exc.value)


def test_empty_text_folder_missing(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    (tmp_path / "folder.png").mkdir()
    cases = {"empty.png": "empty", "notes.png": "not an image", "folder.png": "folder", "missing.png": "no such"}
    for name, phrase in cases.items():
        with pytest.raises(ImageError) as exc:
            read_image(tmp_path / name)
        assert phrase in one_line(exc) and name in str(exc.value)


def test_output_exists_without_overwrite(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, smooth((4, 4, 3)))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError) as exc:
        write_image(path, np.zeros((4, 4, 3), np.uint8))
    assert "pass overwrite=True" in one_line(exc)
    assert path.read_bytes() == before
    write_image(path, np.zeros((4, 4, 3), np.uint8), overwrite=True)
    assert read_image(path).pixels.max() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_unwritable_folder_and_no_leftovers(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(ImageError) as exc:
        write_image(blocker / "out.png", smooth((4, 4, 3)))
    assert "cannot write" in one_line(exc)
    # A failure after the temporary file exists: the target is a folder that replace cannot clobber.
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ImageError):
        write_image(tmp_path / "taken.png", smooth((4, 4, 3)), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder", "taken.png"]
    assert list((tmp_path / "taken.png").iterdir()) == []


def test_unknown_extension_refused(tmp_path):
    with pytest.raises(ImageError) as exc:
        write_image(tmp_path / "out.gif", smooth((4, 4, 3)))
    assert ".gif" in one_line(exc)


# ---- tensor conversion ------------------------------------------------------------------------


def test_tensor_conversions():
    pixels = RNG.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    t = to_tensor(pixels)
    assert t.shape == (3, 5, 6) and t.dtype == torch.float32 and float(t.max()) <= 1.0
    np.testing.assert_array_equal(from_tensor(t, 8), pixels)
    deep = RNG.integers(0, 65536, size=(5, 6, 1), dtype=np.uint16)
    np.testing.assert_array_equal(from_tensor(to_tensor(deep)[None], 16), deep)
    # Clipping and round-half-up.
    odd = torch.tensor([[[-0.2, 0.5 / 255, 1.49 / 255, 2.0]]])
    np.testing.assert_array_equal(from_tensor(odd, 8)[0, :, 0], [0, 1, 1, 255])
