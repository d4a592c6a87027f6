"""Capture (and optionally replace) block-boundary features with forward hooks.

No model code is edited: any architecture whose spec declares its body blocks takes part,
third-party plugins included. Hooks live inside a context manager that always removes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .archs.spec import FeatureView
from .errors import SrdistillError

Replacer = Callable[[torch.Tensor], torch.Tensor]


class HookError(SrdistillError):
    """A declared block is missing from the model or did not fire exactly once."""


@dataclass
class BoundaryFeatures:
    """Features seen during forwards inside :func:`block_hooks`, keyed by block path."""

    blocks: tuple[str, ...]
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.features.clear()
        self.calls = {b: 0 for b in self.blocks}

    def check_fired_once(self) -> None:
        """Raise unless every hooked block ran exactly once since the last reset."""
        bad = {b: n for b, n in self.calls.items() if n != 1}
        if bad:
            detail = ", ".join(f"{b} ran {n}x" for b, n in bad.items())
            raise HookError(f"block hooks must fire exactly once per forward: {detail}")

    def ordered(self) -> list[torch.Tensor]:
        return [self.features[b] for b in self.blocks]


@contextmanager
def block_hooks(
    net: nn.Module,
    blocks: Sequence[str],
    view: FeatureView,
    *,
    capture: bool = True,
    replace: Mapping[str, Replacer] | None = None,
) -> Iterator[BoundaryFeatures]:
    """Hook ``blocks`` (module paths) of ``net``.

    Captured features are stored as B x C x H x W (``view`` converts token-shaped outputs).
    ``replace[path](feature)`` returns a B x C x H x W tensor that *replaces* that block's
    output for the rest of the forward (how the Block Prior Mixer routes mixed features).
    """
    replace = dict(replace or {})
    record = BoundaryFeatures(tuple(blocks))
    record.reset()
    unknown = [p for p in list(blocks) + list(replace) if p not in record.calls]
    if unknown:
        raise HookError(f"replace targets {unknown} are not among the hooked blocks {list(blocks)}")
    handles = []
    try:
        for path in blocks:
            try:
                module = net.get_submodule(path)
            except AttributeError:
                raise HookError(
                    f"declared block {path!r} does not exist in {type(net).__name__}; "
                    f"the architecture spec's blocks() disagrees with the model"
                ) from None

            def hook(mod, args, output, path=path):
                record.calls[path] += 1
                feat = view.to_nchw(output, args)
                if capture:
                    record.features[path] = feat
                if path in replace:
                    return view.from_nchw(replace[path](feat), output, args)
                return None

            handles.append(module.register_forward_hook(hook))
        yield record
    finally:
        for h in handles:
            h.remove()
