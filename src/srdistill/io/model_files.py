"""Reading and writing model weight files. Model files are untrusted input.

* ``.safetensors`` first: the header is validated by hand before the library touches the file,
  so a malformed file gets a message that names the problem.
* Pickles (``.pth``/``.pt``/``.ckpt``) only through ``torch.load(weights_only=True)``; never a
  silent fallback. TorchScript archives and pickled modules are refused with the reason.
* Writing: safetensors only, atomically, never over an existing file without ``overwrite``.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ModelFileError, UnsafeFileError
from .atomic import atomic_write

MAX_FILE_BYTES = 8 * 1024**3  # no SR model comes close; a larger "model" is a mistake
MAX_HEADER_BYTES = 100 * 1024**2  # safetensors' own limit
SAFETENSORS_DTYPES = {
    "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL",
    "F8_E4M3", "F8_E5M2", "U16", "U32", "U64",
}
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass
class RawModelFile:
    """Tensors and metadata read from a file, before any architecture is involved."""

    path: Path
    format: str  # "safetensors" | "pickle"
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    wrapper: str | None = None  # which wrapper key held the state dict, if any


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: no such file (check the path)")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give the model file inside it")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes); the download or copy is incomplete")
    if size > MAX_FILE_BYTES:
        raise ModelFileError(f"{path} is {size / 1024**3:.1f} GiB, over the {MAX_FILE_BYTES // 1024**3} GiB limit for a model file")


def _is_safetensors(path: Path) -> bool:
    if path.suffix.lower() == ".safetensors":
        return True
    # Sniff: 8-byte little-endian header length followed by '{'.
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < MAX_HEADER_BYTES


def _read_safetensors(path: Path) -> RawModelFile:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{path}: truncated safetensors file ({size} bytes, no header); re-download or re-export it")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise ModelFileError(f"{path}: safetensors header claims {n} bytes, over the {MAX_HEADER_BYTES} byte limit; the file is corrupt")
        if 8 + n > size:
            raise ModelFileError(f"{path}: safetensors header claims {n} bytes but the file has only {size - 8} after the length; the file is truncated")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path}: safetensors header is not valid JSON ({exc}); the file is corrupt") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: safetensors header is not a JSON object; the file is corrupt")
    data_len = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{path}: safetensors __metadata__ must map strings to strings")
    for key, info in header.items():
        try:
            begin, end = info["data_offsets"]
            dtype = info["dtype"]
        except (TypeError, KeyError, ValueError):
            raise ModelFileError(f"{path}: tensor {key!r} has a malformed header entry") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise ModelFileError(f"{path}: tensor {key!r} has unknown dtype {dtype!r}")
        if not (0 <= begin <= end <= data_len):
            raise ModelFileError(
                f"{path}: tensor {key!r} claims bytes {begin}..{end} but the file holds only {data_len} data bytes; the file is truncated"
            )
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - the library's errors become one line
        raise ModelFileError(f"{path}: cannot read safetensors data: {exc}") from None
    return RawModelFile(path, "safetensors", tensors, dict(metadata))


def _refuse_torchscript(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise UnsafeFileError(
            f"{path} is a TorchScript archive, which carries code; srdistill loads weights only. "
            f"Export the weights instead: torch.save(model.state_dict(), 'weights.pth')"
        )


# Files people pass by mistake where a model goes: named in the error instead of reaching
# torch.load, whose "unpickling" complaint would read like a security refusal.
NOT_MODEL_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program"),
)


def _refuse_non_model(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(12)
    kind = next((what for magic, what in NOT_MODEL_MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind is not None:
        raise ModelFileError(
            f"{path} is {kind}, not a model file; pass a .safetensors or .pth weights file "
            f"(images to upscale go to `srdistill upscale`)"
        )


def _read_pickle(path: Path) -> RawModelFile:
    _refuse_non_model(path)
    _refuse_torchscript(path)
    try:
        with warnings.catch_warnings():
            # torch warns about non-default pickle protocols; the refusal below says what matters.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        why = f"it asks for {found.group(1)}" if found else "it uses pickle instructions that can construct arbitrary objects"
        raise UnsafeFileError(
            f"{path}: refused: loading this pickle could run code ({why}); weights_only loading blocks it. "
            f"If you trust the file, re-save just the tensors: torch.save(model.state_dict(), 'weights.pth')"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({first}); the file may be truncated or not a model") from None
    state, wrapper = unwrap_state_dict(obj, path)
    return RawModelFile(path, "pickle", state, {}, wrapper)


def unwrap_state_dict(obj: Any, path: Path | str = "<memory>") -> tuple[dict[str, torch.Tensor], str | None]:
    """Find the state dict in common checkpoint wrappers and strip DataParallel's ``module.``."""
    if isinstance(obj, torch.nn.Module):
        raise UnsafeFileError(f"{path} holds a pickled module, not a state dict; save model.state_dict() instead")
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    wrapper = None
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                wrapper, obj = key, obj[key]
                break
        else:
            keys = ", ".join(map(str, list(obj)[:8]))
            raise ModelFileError(
                f"{path}: no tensors found; top-level keys are [{keys}] and none of {list(WRAPPER_KEYS)} holds a state dict"
            )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; pass a plain state dict")
        name = key[len("module."):] if key.startswith("module.") else key
        state[name] = value
    if not state:
        raise ModelFileError(f"{path}: the state dict is empty")
    return state, wrapper


def read_model_file(path: str | Path) -> RawModelFile:
    """Read tensors and metadata from any supported model file, safely."""
    path = Path(path)
    _check_path(path)
    raw = _read_safetensors(path) if _is_safetensors(path) else _read_pickle(path)
    if raw.format == "safetensors":
        raw.tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in raw.tensors.items()}
    validate_values(raw)
    return raw


def validate_values(raw: RawModelFile) -> None:
    """Non-float tensors are left for the architecture check; NaN/inf weights are refused."""
    for key, t in raw.tensors.items():
        if t.dtype in FLOAT_DTYPES:
            bad = (~torch.isfinite(t)).sum().item()
            if bad:
                raise ModelFileError(
                    f"{raw.path}: tensor {key!r} {tuple(t.shape)} contains {bad} NaN/inf values; the weights are corrupt (training diverged?)"
                )


def replace_metadata(path: str | Path, metadata: dict[str, str]) -> Path:
    """Rewrite a safetensors file's ``__metadata__``, atomically, every tensor byte unchanged.

    The header is rebuilt from the file's own (tensor entries and data offsets untouched) and the
    data section is copied as bytes, so no tensor is decoded, converted or re-laid out.
    """
    path = Path(path)
    _read_safetensors(path)  # the same checks as a load: refuse a malformed file before writing
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ModelFileError(f"{path}: safetensors metadata must map strings to strings")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        data = fh.read()
    header.pop("__metadata__", None)
    header = {"__metadata__": metadata, **header}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # safetensors keeps the data section 8-byte aligned
    with atomic_write(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(encoded)) + encoded)
            fh.write(data)
    return path


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], *, overwrite: bool = False) -> Path:
    """Contiguous CPU tensors + string metadata, written atomically."""
    # clone: safetensors refuses tensors that share storage (tied or sliced weights)
    clean = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    with atomic_write(path, overwrite=overwrite) as tmp:
        save_file(clean, str(tmp), metadata=metadata)
    return Path(path)
