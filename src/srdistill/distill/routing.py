"""Run part of a network from a block boundary on: how the Block Prior Mixer assembles networks
out of teacher and student blocks without editing either model.

``forward_from(lr, index, feature)`` runs ``model`` with block ``index``'s output replaced by
``feature`` (a forward hook). The blocks before it would only recompute what is thrown away, so
when the body is a *chain* (each block feeds only the next, as in EDSR, RCAN, SwinIR, RRDBNet)
they are skipped: their ``forward`` is swapped, for the duration of the call, for one returning
its input. Whether a body is a chain is not declared by the spec but checked once per boundary
on the real input: the skipped run must reproduce the full run exactly. A body whose later parts
read earlier blocks directly (RFDN concatenates every block's output) fails the check and is
run in full; its teacher prefix records no autograd graph, as the teacher's weights are frozen.

``stop`` ends the forward early at a later block and returns that block's output (for routed
paths that switch networks at every boundary).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..hooks import block_hooks
from ..models import SRModel
from ..precision import teacher_dtype_guard


class _Stop(Exception):
    def __init__(self, feature: torch.Tensor):
        self.feature = feature


def _pass_through(*args, **kwargs):
    return args[0]


@contextmanager
def skipped(net: torch.nn.Module, paths: Sequence[str]) -> Iterator[None]:
    """Make the modules at ``paths`` return their input, restoring them afterwards."""
    saved = []
    try:
        for path in paths:
            module = net.get_submodule(path)
            saved.append((module, module.__dict__.get("forward")))
            module.forward = _pass_through
        yield
    finally:
        for module, previous in reversed(saved):
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def fit_to(feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``feature`` (LR size) in place of a block output ``like`` that may carry internal padding."""
    dh, dw = like.shape[-2] - feature.shape[-2], like.shape[-1] - feature.shape[-1]
    if dh > 0 or dw > 0:
        feature = F.pad(feature, (0, max(0, dw), 0, max(0, dh)), mode="replicate")
    if dh < 0 or dw < 0:
        feature = feature[..., : like.shape[-2], : like.shape[-1]]
    return feature.to(like.dtype)


class RoutedForward:
    """Partial forwards of one model (teacher or student) from its declared blocks.

    The network is passed to each call (the student inside a training step is the engine's
    module, possibly a copy on another device), the block layout comes from its spec.
    """

    def __init__(self, model: SRModel):
        self.blocks = model.blocks
        self.view = model.spec.feature_view
        self.safe_dtypes = tuple(model.spec.safe_dtypes)
        self.chain: dict[int, bool] = {}

    def _check_chain(self, net: torch.nn.Module, lr: torch.Tensor, index: int) -> bool:
        path = self.blocks[index]
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad(), torch.autocast(lr.device.type, enabled=False):
                x = lr[:1].float()
                with block_hooks(net, self.blocks, self.view) as seen:
                    reference = net(x)
                feature = seen.features[path]
                try:
                    with skipped(net, self.blocks[: index + 1]), block_hooks(
                        net, [path], self.view, capture=False, replace={path: lambda f: feature}
                    ):
                        shortcut = net(x)
                except Exception:  # noqa: BLE001 - any failure just means "not a chain"
                    return False
            if shortcut.shape != reference.shape:
                return False
            tolerance = 1e-5 * float(reference.abs().max()) + 1e-6
            return bool((shortcut - reference).abs().max() <= tolerance)
        finally:
            net.train(was_training)

    def is_chain(self, net: torch.nn.Module, lr: torch.Tensor, index: int) -> bool:
        if index not in self.chain:
            self.chain[index] = self._check_chain(net, lr, index)
        return self.chain[index]

    def forward_from(
        self, net: torch.nn.Module, lr: torch.Tensor, index: int, feature: torch.Tensor, stop: int | None = None
    ) -> torch.Tensor:
        """``net``'s output (or block ``stop``'s NCHW output) with block ``index`` emitting ``feature``."""
        path = self.blocks[index]
        skip = self.blocks[: index + 1] if self.is_chain(net, lr, index) else ()
        replace = {path: lambda f: fit_to(feature, f)}
        hooked = [path]
        if stop is not None:
            if stop <= index:
                raise ValueError(f"stop block {stop} must come after the start block {index}")
            stop_path = self.blocks[stop]
            hooked.append(stop_path)

            def halt(f: torch.Tensor) -> torch.Tensor:
                raise _Stop(f)

            replace[stop_path] = halt
        try:
            # A network unsafe in the step's autocast dtype (SwinIR in fp16) runs in float32 here
            # as in its plain forward (teacher.run_teacher); gradients still flow through it.
            with teacher_dtype_guard(lr.device.type, self.safe_dtypes) as in_float32:
                if in_float32:
                    lr = lr.float()
                with skipped(net, skip), block_hooks(net, hooked, self.view, capture=False, replace=replace):
                    return net(lr)
        except _Stop as stopped:
            return stopped.feature
