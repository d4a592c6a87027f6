"""Export a model to ONNX, checked against PyTorch with ONNX Runtime before it is written.

    result = export_model("student-x4", "student.onnx")
    result.checks        # [(input shape, max |onnx - torch|), ...] on two input sizes

The graph follows the convention of the ecosystem's converters (chaiNNer's among them): one
input ``input`` (N x 3 x H x W float in [0, 1]) and one output ``output`` (N x 3 x sH x sW),
batch, height and width dynamic. Re-parameterisable students are fused first (the spec's
``fuse``). The opset is fixed, :data:`DEFAULT_OPSET` unless asked otherwise.

Exporter: torch.onnx's TorchScript tracer (``dynamo=False``). On torch 2.13 it exports every
convolutional family here in 1-2 s with dynamic sizes and needs no ``onnxscript``; the
torch.export-based exporter took 7-17 s for the same graphs and failed on SwinIR's window logic.

Size rules: a network whose forward pads to a multiple (SwinIR windows) records it in the
metadata (``srdistill.size_multiple``, ``srdistill.min_size``), and srdistill's ONNX Runtime
backend pads tiles exactly as the PyTorch path does. SwinIR's own padding, window grid and
shifted-window mask are traced from the input size, so its graph also runs at other sizes. Sizes
a trace fixed (a forward doing Python arithmetic on shapes, e.g. ``int(x.shape[2])``) are caught
by the check at a second input size and reported as an :class:`ExportError`.

``onnx`` and ``onnxruntime`` are the optional extra ``srdistill[onnx]``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .errors import ExportError, SrdistillError, UsageError, param
from .io.atomic import atomic_write, check_writable
from .models import META_PREFIX, SRModel, load_model, model_metadata
from .provenance import file_sha256

DEFAULT_OPSET = 17
# Opsets whose Conv, Resize (nearest/bicubic), DepthToSpace and Pad cover every built-in family.
SUPPORTED_OPSETS = range(13, 21)
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXTRA_HINT = "pip install 'srdistill[onnx]'"
FP32_TOLERANCE = 1e-4
# fp16 weights and activations carry ~3 significant digits: the check allows that.
FP16_TOLERANCE = 2e-2
# Height x width of the trace and of the two checks; odd sizes exercise the network's own padding.
TRACE_SIDE = 32
CHECK_SIZES = ((1, 32, 32), (2, 45, 37))


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or a UsageError naming the extra that provides them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise UsageError(f"ONNX export and the onnxruntime backend need the onnx and onnxruntime packages ({exc}): {EXTRA_HINT}") from None
    return onnx, onnxruntime


@dataclass
class ExportResult:
    path: Path | None
    arch: str
    scale: int
    opset: int
    precision: str
    params: int
    checks: list[tuple[tuple[int, ...], float]] = field(default_factory=list)
    tolerance: float = FP32_TOLERANCE
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def max_diff(self) -> float:
        return max((d for _, d in self.checks), default=0.0)


class _Float32Boundary(nn.Module):
    """An fp16 network behind float32 input and output, so that callers feed the same arrays."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence file descriptors 1 and 2: the tracer prints its whole IR graph on an unsupported op."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _unsupported_op(exc: BaseException) -> str | None:
    found = re.search(r"operator '([^']+)'", str(exc)) or re.search(r"(aten::\w+|[\w.]+::\w+)", str(exc))
    return found.group(1) if found else None


def _prepared(model: SRModel, fp16: bool) -> nn.Module:
    net = copy.deepcopy(model.fuse().net).float().cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return _Float32Boundary(net.half()) if fp16 else net


def _trace_side(model: SRModel) -> int:
    multiple = model.pad_multiple
    side = max(TRACE_SIDE, int(model.spec.min_size))
    return -(-side // multiple) * multiple


def onnx_bytes(model: SRModel, *, opset: int = DEFAULT_OPSET, fp16: bool = False) -> bytes:
    """The model's ONNX graph (fused, float32 I/O, dynamic batch/height/width), unchecked.

    An operation ONNX lacks raises an :class:`ExportError` that names it."""
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(f"{param('opset')} {opset} is not supported; use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    net = _prepared(model, fp16)
    side = _trace_side(model)
    example = torch.rand(1, 3, side, side)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _quiet_fds(), torch.no_grad():
            # The tracer's deprecation and tracer warnings are about torch's plans, not this model.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, do_constant_folding=True,
            )
    except SrdistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter's errors become one line naming the op
        op = _unsupported_op(exc)
        what = f"operation {op!r} has no ONNX equivalent at opset {opset}" if op else f"the exporter failed ({str(exc).splitlines()[0][:200]})"
        raise ExportError(
            f"{model.arch} cannot be exported to ONNX: {what}; try another {param('opset')}, or replace that operation "
            f"in the architecture"
        ) from None
    return buffer.getvalue()


def session(model_bytes: bytes | str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a graph (bytes or a file path)."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures reach the caller as exceptions; its own log would repeat them
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = str(model_bytes) if isinstance(model_bytes, (str, Path)) else model_bytes
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def check_against_torch(model: SRModel, model_bytes: bytes, *, fp16: bool = False, tolerance: float | None = None,
                        sizes: tuple[tuple[int, int, int], ...] = CHECK_SIZES) -> list[tuple[tuple[int, ...], float]]:
    """Max |ONNX Runtime - PyTorch| on each input size; an ExportError past ``tolerance``."""
    tolerance = (FP16_TOLERANCE if fp16 else FP32_TOLERANCE) if tolerance is None else tolerance
    sess = session(model_bytes)
    net = _prepared(model, fp16)
    multiple, min_side = model.pad_multiple, int(model.spec.min_size)
    generator = torch.Generator().manual_seed(0)
    results = []
    for batch, height, width in sizes:
        # A graph with size rules is only ever fed sizes it accepts (the backend pads tiles to them).
        h, w = (max(min_side, -(-side // multiple) * multiple) for side in (height, width))
        x = torch.rand(batch, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = net(x).numpy()
        try:
            got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's failure, as one line
            raise ExportError(
                f"{model.arch}: the exported graph does not run at input size {batch}x3x{h}x{w} "
                f"({str(exc).splitlines()[0][:240]}); its forward fixes sizes while tracing (shape arithmetic in "
                f"Python), so it cannot be exported with dynamic height and width"
            ) from None
        if got.shape != expected.shape:
            raise ExportError(f"{model.arch}: the exported graph gives shape {got.shape} at input {tuple(x.shape)}, PyTorch {expected.shape}")
        diff = float(abs(got - expected).max())
        if not diff <= tolerance:
            raise ExportError(
                f"{model.arch}: ONNX Runtime differs from PyTorch by {diff:.3g} at input {tuple(x.shape)} "
                f"(allowed {tolerance:g}); the export is not faithful, try another {param('opset')}"
            )
        results.append((tuple(x.shape), diff))
    return results


def onnx_metadata(model: SRModel, *, opset: int, fp16: bool, provenance: Mapping[str, Any] | None = None) -> dict[str, str]:
    """srdistill's model metadata plus what a runtime needs: size rules, precision, names."""
    fused = model.fuse()
    meta = model_metadata(fused, provenance)
    meta.update({
        META_PREFIX + "size_multiple": str(model.pad_multiple),
        META_PREFIX + "min_size": str(int(model.spec.min_size)),
        META_PREFIX + "precision": "float16" if fp16 else "float32",
        META_PREFIX + "io": json.dumps({"input": INPUT_NAME, "output": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32"}),
        META_PREFIX + "opset": str(opset),
    })
    return meta


def _with_metadata(model_bytes: bytes, metadata: Mapping[str, str]) -> bytes:
    onnx, _ = require_onnx()
    proto = onnx.load_model_from_string(model_bytes)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "srdistill", __version__
    proto.doc_string = f"{metadata.get(META_PREFIX + 'arch', '')} x{metadata.get(META_PREFIX + 'scale', '')}: input N x 3 x H x W in [0, 1]"
    return proto.SerializeToString()


def export_model(
    model: SRModel | str | Path,
    output: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    overwrite: bool = False,
    hparams: Mapping[str, Any] | None = None,
    check: bool = True,
) -> ExportResult:
    """Export ``model`` (an SRModel, a model file or a bundled name) to an ONNX file, atomically.

    The graph is checked with ONNX Runtime against PyTorch on two input sizes before anything is
    written (``check=False`` skips that); nothing is left behind on any failure.
    """
    start = time.perf_counter()
    output = Path(output)
    require_onnx()
    check_writable(output, overwrite=overwrite)  # before loading or tracing anything
    if not isinstance(model, SRModel):
        model = load_model(model, hparams=hparams)
    if fp16 and torch.float16 not in tuple(model.spec.safe_dtypes):
        allowed = ", ".join(str(d).replace("torch.", "") for d in model.spec.safe_dtypes)
        raise UsageError(f"{param('fp16')}: {model.arch} is not numerically safe in float16 (its spec allows {allowed}); export in float32")
    graph = onnx_bytes(model, opset=opset, fp16=fp16)
    checks = check_against_torch(model, graph, fp16=fp16) if check else []
    provenance: dict[str, Any] = {"exported_by": "srdistill export", "exporter": f"torch.onnx tracer, torch {torch.__version__}"}
    if model.source is not None:
        provenance.update({"exported_from": model.source.name, "source_sha256": file_sha256(model.source)})
    metadata = onnx_metadata(model, opset=opset, fp16=fp16, provenance=provenance)
    data = _with_metadata(graph, metadata)
    with atomic_write(output, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    fused = model.fuse()
    return ExportResult(
        path=output, arch=model.arch, scale=model.scale, opset=opset, precision="float16" if fp16 else "float32",
        params=fused.num_params, checks=checks, tolerance=FP16_TOLERANCE if fp16 else FP32_TOLERANCE,
        seconds=time.perf_counter() - start, metadata=metadata,
    )


__all__ = [
    "CHECK_SIZES", "DEFAULT_OPSET", "ExportResult", "INPUT_NAME", "OUTPUT_NAME", "check_against_torch", "export_model",
    "onnx_bytes", "onnx_metadata", "require_onnx", "session",
]
