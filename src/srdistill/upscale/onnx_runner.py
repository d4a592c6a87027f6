"""The ONNX Runtime backend: the model's exported graph run on the CPU in place of PyTorch.

:class:`OnnxRunner` answers the calls the tiled path makes of a :class:`srdistill.inference.Runner`
(a CPU float32 batch in, a CPU float32 batch out), so tiling, blending, alpha, 16-bit output and
metadata are the same code for both backends. The graph is exported in memory (fused, float32)
and checked against PyTorch once, as ``srdistill export`` does.
"""

from __future__ import annotations

import os
import time

import torch

from ..errors import UsageError, param
from ..export import INPUT_NAME, OUTPUT_NAME, check_against_torch, onnx_bytes, require_onnx, session
from ..inference import Runner
from ..models import SRModel
from ..tiling import bytes_per_input_pixel

BACKENDS = ("torch", "onnxruntime")


class OnnxRunner:
    """A model's ONNX graph in an ONNX Runtime CPU session, called like a :class:`Runner`."""

    channels_last = False

    def __init__(self, sess, scale: int, multiple: int, min_size: int, bytes_per_pixel: float,
                 graph: bytes | None = None, threads: int = 1, tune: bool = False):
        self.session = sess
        # Thread count: as for PyTorch (inference.ThreadTuner), on a busy shared machine one thread
        # can beat several; with ``tune`` the second and third tiles of one shape are timed with the
        # session's count and with a one-thread session, and the faster session is kept.
        self.graph = graph
        self.thread_count = threads
        self._tune = tune and graph is not None and threads > 1
        self._calls = 0
        self._timed: tuple[tuple, float] | None = None
        self.scale = scale
        self.multiple = max(1, multiple)
        self.min_size = max(1, min_size)
        self.bytes_per_pixel = bytes_per_pixel
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.threads = None

    @classmethod
    def prepare(cls, model: SRModel, *, threads: int | None = None) -> OnnxRunner:
        multiple = model.spec.pad_multiple(model.hparams, model.scale)
        min_size = int(model.spec.min_size)
        # The memory policy's activation estimate comes from the PyTorch forward: ONNX Runtime's
        # own arena is not visible from here, and its peak is not larger than PyTorch's.
        probe = Runner.prepare(model.net, model.scale, multiple, torch.device("cpu"), torch.float32, min_size, threads=1)
        per_pixel = bytes_per_input_pixel(probe)
        graph = onnx_bytes(model)
        check_against_torch(model, graph)
        # ONNX Runtime's default is one thread per logical core, which oversubscribes SMT cores.
        count = threads or torch.get_num_threads() or os.cpu_count() or 1
        return cls(session(graph, count), model.scale, multiple, min_size, per_pixel, graph, count, tune=threads is None)

    def restore_threads(self) -> None:
        """Nothing to restore: the session owns its thread pool."""

    def _run(self, sess, batch) -> torch.Tensor:
        return torch.from_numpy(sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])

    def __call__(self, x: torch.Tensor, *, tune: bool = True) -> torch.Tensor:
        batch = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if not (tune and self._tune):
            return self._run(self.session, batch)
        self._calls += 1
        if self._calls == 1:  # warm-up: kernel and arena set-up would bias the timing
            return self._run(self.session, batch)
        shape = tuple(batch.shape)
        if self._timed is None or self._timed[0] != shape:
            start = time.perf_counter()
            out = self._run(self.session, batch)
            self._timed = (shape, time.perf_counter() - start)
            self._tune = self._calls <= 8  # shapes that never repeat: stop trying
            return out
        single = session(self.graph, 1)
        self._run(single, batch)  # its own warm-up
        start = time.perf_counter()
        out = self._run(single, batch)
        if time.perf_counter() - start < self._timed[1]:
            self.session, self.thread_count = single, 1
        self._tune = False
        return out


def check_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"{param('backend')} {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise UsageError(f"{param('backend')} onnxruntime runs on the CPU; use {param('device', 'cpu')} or {param('backend', 'torch')}")
        if dtype != torch.float32:
            raise UsageError(f"{param('backend')} onnxruntime runs float32; use {param('dtype', 'float32')} or {param('backend', 'torch')}")
        require_onnx()  # before any work: without the extra, one line naming it
    return backend


__all__ = ["BACKENDS", "OnnxRunner", "check_backend"]
