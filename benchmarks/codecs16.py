"""16-bit colour PNG/TIFF codecs side by side: the ones srdistill uses (the ``codecs16`` extra) and the alternatives.

On one 16-bit RGB image (a photo from ../shared/data/benchmarks resized in float to --size, so
the low byte carries real detail; a synthetic gradient without ../shared): exact round trip,
best-of-N encode and decode times (every decoder of a format reads the same file), file size, each time as a ratio to the codec srdistill uses
for that format, the installed size of the package and whether it is pure Python. Then the
overlong-stream check, each codec in a fresh process: a 10x10 file whose compressed image data
inflates to --bomb-mb megabytes, and the peak memory its decoder added.

    python benchmarks/codecs16.py                # needs .[codecs16]; pypng and opencv rows if installed
    python benchmarks/codecs16.py --size 2000 --repeat 5

Candidates missing from the environment are listed as such, not failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

PHOTO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "benchmarks" / "McMaster" / "1.png"
ADOPTED = {"PNG": "imagecodecs", "TIFF": "tifffile+imagecodecs"}
# Candidate -> the distributions it installs (for the size column).
DISTRIBUTIONS = {
    "imagecodecs": ["imagecodecs"],
    "tifffile+imagecodecs": ["tifffile", "imagecodecs"],
    "tifffile alone": ["tifffile"],
    "pypng": ["pypng"],
    "opencv": ["opencv-python-headless"],
    "Pillow 8-bit": ["pillow"],
}


def test_image(size: int) -> tuple[np.ndarray, str]:
    if PHOTO.is_file():
        with Image.open(PHOTO) as im:
            planes = [np.asarray(c.convert("F").resize((size, size), Image.BICUBIC)) for c in im.convert("RGB").split()]
        source = f"{PHOTO.name} (McMaster) resized to {size}x{size} in float"
    else:
        yy, xx = np.mgrid[0:size, 0:size] / size
        planes = [xx * 255, yy * 255, (xx + yy) * 127 + np.random.default_rng(0).normal(0, 2, (size, size))]
        source = f"synthetic {size}x{size} gradient (../shared not found)"
    return np.clip(np.round(np.stack(planes, 2) * 257), 0, 65535).astype(np.uint16), source


def codecs(block_imagecodecs: bool = False) -> dict:
    """``name -> (format, encode(pixels) -> bytes, decode(bytes) -> pixels)`` for what is installed."""
    if block_imagecodecs:
        sys.modules["imagecodecs"] = None  # tifffile then falls back to zlib and its own codecs
    found: dict = {}

    def tiff_encode(tifffile, pixels):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, pixels, photometric="rgb", compression="zlib", predictor=True, metadata=None)
        return buffer.getvalue()

    try:
        import tifffile

        name = "tifffile alone" if block_imagecodecs else "tifffile+imagecodecs"
        found[name] = ("TIFF", lambda p: tiff_encode(tifffile, p),
                       lambda d: tifffile.imread(io.BytesIO(d), maxworkers=1))
    except ImportError:
        pass
    if block_imagecodecs:
        return found
    try:
        import imagecodecs

        found["imagecodecs"] = ("PNG", imagecodecs.png_encode, imagecodecs.png_decode)
    except ImportError:
        pass
    try:
        import png

        def pypng_encode(pixels):
            buffer = io.BytesIO()
            h, w, c = pixels.shape
            png.Writer(w, h, greyscale=False, alpha=c == 4, bitdepth=16).write(buffer, pixels.reshape(h, w * c))
            return buffer.getvalue()

        def pypng_decode(data):
            width, height, rows, info = png.Reader(bytes=data).read()
            return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, info["planes"])

        found["pypng"] = ("PNG", pypng_encode, pypng_decode)
    except ImportError:
        pass
    try:
        import cv2

        def cv2_codec(ext):
            encode = lambda p: cv2.imencode(ext, np.ascontiguousarray(p[:, :, ::-1]))[1].tobytes()  # noqa: E731
            decode = lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]  # noqa: E731
            return encode, decode

        found["opencv"] = ("PNG", *cv2_codec(".png"))
        found["opencv TIFF"] = ("TIFF", *cv2_codec(".tiff"))
    except ImportError:
        pass
    for fmt in ("PNG", "TIFF"):
        def pillow_encode(pixels, fmt=fmt):
            buffer = io.BytesIO()
            Image.fromarray((pixels >> 8).astype(np.uint8)).save(buffer, format=fmt, **(
                {"compression": "tiff_adobe_deflate"} if fmt == "TIFF" else {}))
            return buffer.getvalue()

        def pillow_decode(data):
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im)

        found["Pillow 8-bit" + (" TIFF" if fmt == "TIFF" else "")] = (fmt, pillow_encode, pillow_decode)
    return found


def measure(pixels: np.ndarray, repeat: int, block_imagecodecs: bool = False) -> dict:
    """Per codec: best encode time, and best time to decode the file of the format's used codec.

    Decoders all read the same file (libpng's adaptive filters, or tifffile's Deflate strips with
    the horizontal predictor), so a decoder is not flattered by its own encoder's choices; pypng,
    for one, writes only unfiltered rows, which it undoes fastest.
    """
    entries = codecs(block_imagecodecs)
    reference = {fmt: encode(pixels) for name, (fmt, encode, _) in entries.items()
                 if name == ADOPTED[fmt] or (block_imagecodecs and fmt == "TIFF")}
    results = {}
    for name, (fmt, encode, decode) in entries.items():
        best_encode = best_decode = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            data = encode(pixels)
            best_encode = min(best_encode, time.perf_counter() - start)
        source = data if name.startswith("Pillow") else reference.get(fmt, data)
        for _ in range(repeat):
            start = time.perf_counter()
            back = decode(source)
            best_decode = min(best_decode, time.perf_counter() - start)
        exact = None
        if not name.startswith("Pillow"):
            exact = bool(np.array_equal(back, pixels) and np.array_equal(decode(data), pixels))
        results[name] = {"format": fmt, "encode": best_encode, "decode": best_decode, "bytes": len(data),
                         "exact": exact}
    return results


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def overlong_file(fmt: str, megabytes: int) -> bytes:
    """A 10x10 16-bit RGB file whose one block of image data inflates to ``megabytes``."""
    stream = zlib.compress(bytes(megabytes * 2**20), 9)
    if fmt == "PNG":
        header = struct.pack(">IIBBBBB", 10, 10, 16, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b""))
    # A baseline little-endian TIFF: one Deflate strip at offset 8, the IFD after it.
    entries = [(256, 3, 1, 10), (257, 3, 1, 10), (258, 3, 3, 0), (259, 3, 1, 8), (262, 3, 1, 2),
               (273, 4, 1, 8), (277, 3, 1, 3), (278, 3, 1, 10), (279, 4, 1, len(stream))]
    ifd_at = 8 + len(stream) + len(stream) % 2
    bits_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        # A LONG, or an offset to values too long for the entry (258's three SHORTs), fills 4 bytes.
        value = bits_at if tag == 258 else value
        field = struct.pack("<I", value) if kind == 4 or count > 2 else struct.pack("<HH", value, 0)
        ifd += struct.pack("<HHI", tag, kind, count) + field
    ifd += b"\x00\x00\x00\x00" + struct.pack("<3H", 16, 16, 16)
    return b"II*\x00" + struct.pack("<I", ifd_at) + stream + b"\x00" * (len(stream) % 2) + ifd


def bomb_worker(name: str, megabytes: int) -> dict:
    entries = codecs(block_imagecodecs=name == "tifffile alone")
    fmt, _, decode = entries[name]
    data = overlong_file(fmt, megabytes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        shape = tuple(np.asarray(decode(data)).shape)
        outcome = f"decoded {shape[0]}x{shape[1]}"
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer being measured
        outcome = f"refused ({type(exc).__name__})"
    added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"outcome": outcome, "added_mb": added}


def in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def install_size(name: str) -> tuple[float | None, bool | None]:
    """Installed megabytes of ``name``'s distributions, and whether all of it is pure Python."""
    total, pure = 0, True
    for dist_name in DISTRIBUTIONS.get(name.replace(" TIFF", ""), []):
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError:
            return None, None
        for file in files:
            total += file.size or 0
            pure = pure and not str(file).endswith((".so", ".pyd", ".dll")) and ".so." not in str(file)
    return total / 2**20, pure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="side of the square test image")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bomb-mb", type=int, default=200, help="what the overlong stream inflates to")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bomb", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bomb:
        print(json.dumps(bomb_worker(args.bomb, args.bomb_mb)))
        return
    pixels, source = test_image(args.size)
    if args.worker == "tifffile alone":
        print(json.dumps(measure(pixels, args.repeat, block_imagecodecs=True)))
        return

    results = measure(pixels, args.repeat)
    alone = in_subprocess("--worker", "tifffile alone", "--size", str(args.size), "--repeat", str(args.repeat))
    if "error" not in alone:
        results.update(alone)
    megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
    console = Console(width=200)
    console.print(f"16-bit RGB test image: {source}, {megapixels:.2f} MP, {pixels.nbytes / 2**20:.1f} MiB raw; "
                  f"best of {args.repeat}")
    table = Table(title="16-bit colour codecs (ratios: time / time of the codec srdistill uses for the format)")
    for column in ("format", "codec", "exact", "encode ms", "x", "decode ms", "x", "file MiB", "install MiB",
                   "pure Python", f"{args.bomb_mb} MB overlong stream", "RSS added MiB"):
        table.add_column(column, justify="left" if column in ("format", "codec") else "right")
    for fmt in ("PNG", "TIFF"):
        adopted = results.get(ADOPTED[fmt])
        for name, row in results.items():
            if row["format"] != fmt:
                continue
            size, pure = install_size(name)
            bomb = {} if name.startswith("Pillow") else in_subprocess("--bomb", name, "--bomb-mb", str(args.bomb_mb))
            table.add_row(
                fmt, name + (" (used)" if name == ADOPTED[fmt] else ""),
                "-" if row["exact"] is None else ("yes" if row["exact"] else "NO"),
                f"{row['encode'] * 1e3:.0f}", f"{row['encode'] / adopted['encode']:.2f}" if adopted else "-",
                f"{row['decode'] * 1e3:.0f}", f"{row['decode'] / adopted['decode']:.2f}" if adopted else "-",
                f"{row['bytes'] / 2**20:.2f}", "-" if size is None else f"{size:.1f}",
                "-" if pure is None else ("yes" if pure else "no"),
                bomb.get("outcome", bomb.get("error", "-")),
                f"{bomb['added_mb']:.0f}" if "added_mb" in bomb else "-",
            )
    console.print(table)
    console.print("Pillow 8-bit rows: the same image reduced to 8 bits, for scale (Pillow cannot hold 16-bit RGB).")


if __name__ == "__main__":
    main()
