"""``srdistill upscale`` end to end: every bad input gets one clear line, the right exit code, no leftovers."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli
from PIL import Image

import srdistill
from srdistill.data.imageio import read_image, write_image

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for scale in (2, 4):
        model = srdistill.build_model("edsr", scale, {"n_feats": 8, "n_resblocks": 1})
        paths[scale] = srdistill.save_model(model, folder / f"tiny_x{scale}.safetensors")
    return SimpleNamespace(x2=paths[2], x4=paths[4])


def rgb(h=12, w=10) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def declared_bomb(path: Path) -> None:
    """A PNG whose header declares 100000 x 100000 pixels, with a few bytes of data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


# -- bad inputs: one line, exit 1, nothing written -----------------------------------------------------
def bad_file(kind: str, folder: Path) -> tuple[Path, str]:
    path = folder / f"{kind}.png"
    if kind == "not-an-image":
        path.write_text("hello, I am text\n")
        return path, "not an image file"
    if kind == "zero-byte":
        path.write_bytes(b"")
        return path, "empty (0-byte) file"
    if kind == "truncated":
        Image.fromarray(rgb(32, 32)).save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if kind == "bomb":
        declared_bomb(path)
        return path, "--max-pixels"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not-an-image", "zero-byte", "truncated", "bomb"])
def test_bad_image_one_line_no_output(tmp_path, models, kind):
    path, phrase = bad_file(kind, tmp_path)
    out = tmp_path / "out"
    result = invoke("upscale", path, "--model", models.x4, "-o", out)
    assert_one_line_error(result, phrase, path.name, code=1)
    assert not out.exists() or files_in(out) == []


def test_max_pixels_flag(tmp_path, models):
    Image.fromarray(rgb(20, 20)).save(tmp_path / "a.png")
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4, "--max-pixels", "100", "-o", tmp_path / "o.png")
    assert_one_line_error(result, "--max-pixels", "20x20", code=1)
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4, "--max-output-pixels", "1000", "-o", tmp_path / "o.png")
    assert_one_line_error(result, "--max-output-pixels", "80x80", code=1)
    assert files_in(tmp_path) == ["a.png"]


# -- unusual but valid images ---------------------------------------------------------------------
def test_odd_images_are_upscaled_in_kind(tmp_path, models):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rgb(1, 1)).save(src / "one.png")  # 1x1, smaller than any tile padding
    Image.fromarray(rgb(5, 7)).save(src / "tiny.png")  # smaller than the default 24 px padding
    write_image(src / "deep.png", RNG.integers(0, 65536, size=(6, 5, 3), dtype=np.uint16))
    palette = Image.fromarray(RNG.integers(0, 4, size=(8, 8), dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.info["transparency"] = 0
    palette.save(src / "palette.png", transparency=0)
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(src / "cmyk.jpg", quality=95)
    Image.fromarray(rgb(9, 8)[:, :, 0]).save(src / "gray.png")
    out = tmp_path / "out"
    result = invoke("upscale", src, "--model", models.x4, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == 0 and len(report["images"]) == 6
    expect = {
        "one.png": ("RGB", (4, 4), 8), "tiny.png": ("RGB", (28, 20), 8), "deep.png": ("RGB;16", (20, 24), 16),
        "palette.png": ("RGBA", (32, 32), 8), "cmyk.jpg": ("RGB", (32, 24), 8), "gray.png": ("L", (32, 36), 8),
    }
    for name, (mode, size, bits) in expect.items():
        got = read_image(out / name)
        channels = got.pixels.shape[2] + (got.alpha is not None)
        assert (got.width, got.height) == size and got.bit_depth == bits, name
        assert channels == {"RGB": 3, "RGB;16": 3, "RGBA": 4, "L": 1}[mode], name
    notes = {Path(r["source"]).name: r["notes"] for r in report["images"]}
    assert any("CMYK" in n for n in notes["cmyk.jpg"])


# -- outputs --------------------------------------------------------------------------------------
def test_output_exists_overwrite_and_skip(tmp_path, models):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    out = tmp_path / "a_x4.png"
    out.write_bytes(b"keep me")
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4)  # default name: a_x4.png
    assert_one_line_error(result, "already exists", "--overwrite", code=1)
    assert out.read_bytes() == b"keep me"
    assert invoke("upscale", tmp_path / "a.png", "--model", models.x4, "--skip-existing").returncode == 0
    assert out.read_bytes() == b"keep me"
    assert invoke("upscale", tmp_path / "a.png", "--model", models.x4, "--overwrite").returncode == 0
    assert Image.open(out).size == (40, 48)


def test_unwritable_output_folder(tmp_path, models):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("in the way")
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4, "-o", tmp_path / "file" / "sub")
    assert_one_line_error(result, "cannot write", "not a folder", code=1)
    assert files_in(tmp_path) == ["a.png", "file"]


def test_folder_structure_suffix_and_ext(tmp_path, models):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(rgb()).save(src / "a.png")
    Image.fromarray(rgb()).save(src / "trip" / "b.jpg")
    (src / "notes.txt").write_text("not an image, ignored in folders")
    out = tmp_path / "out"
    assert invoke("upscale", src, "--model", models.x4, "-o", out).returncode == 0
    assert files_in(out) == ["a.png"]  # not recursive
    result = invoke("upscale", src, "--model", models.x4, "-o", out, "-r", "--suffix", "_big", "--ext", "webp")
    assert result.returncode == 0, result.stderr
    assert files_in(out) == ["a.png", "a_big.webp", "trip/b_big.webp"]
    result = invoke("upscale", str(src / "*.png"), "--model", models.x4, "-o", tmp_path / "glob")
    assert result.returncode == 0 and files_in(tmp_path / "glob") == ["a.png"]


def test_keep_going_reports_every_bad_file_at_the_end(tmp_path, models):
    src = tmp_path / "mixed"
    src.mkdir()
    Image.fromarray(rgb()).save(src / "good1.png")
    Image.fromarray(rgb()).save(src / "good2.png")
    bad_file("not-an-image", src)
    bad_file("truncated", src)
    out = tmp_path / "out"
    result = run_cli("upscale", src, "--model", models.x4, "-o", out, "--keep-going")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "not-an-image.png" in lines[0] and "truncated.png" in lines[1]
    assert files_in(out) == ["good1.png", "good2.png"]  # no partial or temporary files
    # Without --keep-going the first bad file stops the run with its one line.
    result = invoke("upscale", src, "--model", models.x4, "-o", tmp_path / "stop")
    assert_one_line_error(result, "not-an-image.png", code=1)


# -- model and scale ------------------------------------------------------------------------------
def test_scale_other_than_the_model(tmp_path, models):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4, "-s", "2", "--no-resize", "-o", tmp_path / "o.png")
    assert_one_line_error(result, "model is x4, --scale 2 asked", "(without --no-resize)", code=2)
    assert not (tmp_path / "o.png").exists()
    result = invoke("upscale", tmp_path / "a.png", "--model", models.x4, "-s", "2", "-o", tmp_path / "o.png")
    assert result.returncode == 0 and "resized" in result.stderr
    assert Image.open(tmp_path / "o.png").size == (20, 24)


def test_without_a_model_says_how_to_pass_one(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "a.png")
    result = run_cli("upscale", tmp_path / "a.png", "-s", "8")  # nothing is bundled at x8
    assert_one_line_error(result, "--model path/to/model.safetensors", code=2)
    assert files_in(tmp_path) == ["a.png"]


def test_single_file_end_to_end_with_table(tmp_path, models):
    Image.fromarray(rgb(16, 20)).save(tmp_path / "a.png")
    result = run_cli("upscale", tmp_path / "a.png", "--model", models.x2, "-o", tmp_path / "big.png", "--tile", "8", "--tta")
    assert result.returncode == 0, result.stderr
    assert "a.png" in result.stdout and "20x16" in result.stdout and "40x32" in result.stdout
    assert Image.open(tmp_path / "big.png").size == (40, 32)
