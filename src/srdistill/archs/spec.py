"""The architecture spec: the one object every other layer reads.

An architecture module (built-in or third-party plugin) exposes one frozen :class:`ArchSpec` and
registers it with one entry-point line in the ``srdistill.archs`` group. Hooks, mixers, upscale
(padding, dtype) and model I/O consume the spec, never model classes.

Conventions every built network follows:
* input  N x 3 x H x W float in [0, 1];  output N x 3 x sH x sW in [0, 1] (not clamped);
* any conversion to the network's native range (0..255 for EDSR/RCAN) and mean shift happens
  inside the network's ``forward`` and never modifies the input tensor in place;
* ``state_dict()`` keys are exactly the official release's keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported where a network is built or counted, not here: the registry and the command
# line read specs (ids, presets, scales) without paying for torch.

Hparams = Mapping[str, Any]


class ShapeLike(Protocol):
    shape: Any


# Detection only reads ``.shape`` (and occasionally values), so a mapping of zero tensors built
# from a key->shape manifest works as well as a real state dict.
StateDict = Mapping[str, ShapeLike]


@dataclass(frozen=True)
class Detection:
    """What a spec recognised in a state dict."""

    scale: int
    hparams: dict[str, Any]
    # Hyperparameters the weights cannot tell (e.g. EDSR ``res_scale``: the function with
    # (W, 0.1) equals the one with (0.1 W, 1.0)). They were filled from the official convention;
    # srdistill metadata or an explicit override beats them.
    assumed: tuple[str, ...] = ()
    # How the detector recognised the layout, when it delegates to a loader library (e.g.
    # "spandrel 0.4.2 ModelLoader, family HAT"); `inspect` shows it. Empty: the spec's own key rules.
    via: str = ""


class FeatureView(Protocol):
    """How a block's output becomes a B x C x H x W feature map, and back."""

    name: str

    def to_nchw(self, output: Any, args: tuple) -> torch.Tensor: ...

    def from_nchw(self, feature: torch.Tensor, output: Any, args: tuple) -> Any: ...


@dataclass(frozen=True)
class NCHWView:
    """Blocks that already emit B x C x H x W tensors (EDSR, RCAN, RRDBNet, most CNNs)."""

    name: str = "nchw"

    def to_nchw(self, output: Any, args: tuple) -> torch.Tensor:
        return output

    def from_nchw(self, feature: torch.Tensor, output: Any, args: tuple) -> Any:
        return feature


@dataclass(frozen=True)
class TokenView:
    """Blocks that emit tokens B x (H*W) x C and receive the spatial size as an argument.

    ``size_arg`` is the position of the ``(H, W)`` argument in the block's forward call
    (SwinIR's RSTB is called as ``layer(x, x_size)``, so 1).
    """

    size_arg: int = 1
    name: str = "tokens"

    def to_nchw(self, output: Any, args: tuple) -> torch.Tensor:
        h, w = args[self.size_arg]
        b, n, c = output.shape
        return output.transpose(1, 2).reshape(b, c, h, w)

    def from_nchw(self, feature: torch.Tensor, output: Any, args: tuple) -> Any:
        return feature.flatten(2).transpose(1, 2)


NCHW = NCHWView()
TOKENS = TokenView()


def _float_dtypes() -> tuple[torch.dtype, ...]:
    import torch

    return (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class ArchSpec:
    """Everything srdistill needs to know about one architecture family.

    ``build(scale=..., **hparams)`` takes keyword-only hyperparameters (no ``**kwargs``: a typo
    fails loudly). ``defaults`` lists every hyperparameter with its default value; its value types
    are used to parse ``key=value`` overrides from the command line.
    """

    id: str
    title: str
    build: Callable[..., nn.Module]
    detect: Callable[[StateDict], Detection | None]
    defaults: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]]
    blocks: Callable[[Hparams], tuple[str, ...]]
    block_channels: Callable[[Hparams], tuple[int, ...]]
    scales: tuple[int, ...]
    feature_view: FeatureView = NCHW
    value_range: float = 1.0
    mean_handling: str = "none"
    # Input sizes the network handles without internal padding, as a function of (hparams, scale).
    size_multiple: Callable[[Hparams, int], int] = field(default=lambda hp, scale: 1)
    min_size: int = 1
    safe_dtypes: tuple[torch.dtype, ...] = field(default_factory=_float_dtypes)
    detect_before: tuple[str, ...] = ()
    # A catch-all detector (a loader library that recognises many layouts) is tried only after
    # every specific detector declined, so a layout both could load stays with the specific one.
    detect_fallback: bool = False
    # A catch-all loader's catalogue (optional): one row per model family it loads, with at least
    # ``family``, ``arch`` (the id that loads it, None when refused) and ``blocks`` (feature-level
    # methods work with it). ``srdistill archs`` lists it; nothing else depends on it.
    families: Callable[[], list[dict[str, Any]]] | None = None
    # The detected file's tensors as the built network names them (optional), for a spec whose
    # detector is a loader library that renames keys while loading (old and new layouts of one
    # network). Applied after detection, before the shape check; None: the file's names are the network's.
    adapt_state_dict: Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]] | None = None
    reference: str = ""
    # Hyperparameters of a small, fast instance: what the registry-wide conformance suite and
    # quick checks build. Empty means the arch defaults.
    small: Mapping[str, Any] = field(default_factory=dict)
    # Re-parameterisation (optional): ``fuse(net, hparams) -> (net, hparams)`` gives the inference
    # form of a training-form network, the same function with fewer operations, and returns a
    # network already in inference form unchanged. srdistill writes trained students fused and
    # exports them fused; the returned hparams must detect back from the fused state dict.
    fuse: Callable[[nn.Module, Hparams], tuple[nn.Module, dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        if not self.id or self.id != self.id.lower() or " " in self.id:
            raise ValueError(f"arch id {self.id!r} must be lower-case without spaces")
        for name in self.presets:
            if name != self.id and not name.startswith(self.id + "-"):
                # Presets are found without importing every plugin: "edsr-lite" -> arch "edsr".
                raise ValueError(f"preset {name!r} of arch {self.id!r} must be '{self.id}' or start with '{self.id}-'")
            unknown = set(self.presets[name]) - set(self.defaults)
            if unknown:
                raise ValueError(f"preset {name!r} sets unknown hyperparameters {sorted(unknown)}")
        unknown = set(self.small) - set(self.defaults)
        if unknown:
            raise ValueError(f"small instance of {self.id!r} sets unknown hyperparameters {sorted(unknown)}")

    def resolve(self, hparams: Hparams | None = None, preset: str | None = None) -> dict[str, Any]:
        """Defaults, then a preset, then explicit values (typed like the defaults; unknown names fail)."""
        from ..hparams import coerce_hparams

        out = dict(self.defaults)
        if preset is not None:
            out.update(self.presets[preset])
        out.update(coerce_hparams(self.id, self.defaults, hparams or {}))
        return out

    def instantiate(self, scale: int, hparams: Hparams) -> nn.Module:
        from ..errors import UsageError

        if scale not in self.scales:
            raise UsageError(f"{self.id} supports scales {list(self.scales)}, not x{scale}")
        return self.build(scale=scale, **self.resolve(hparams))

    def param_count(self, scale: int, hparams: Hparams) -> int:
        import torch

        # Meta tensors: counting the parameters of a 16M-parameter preset costs no memory.
        with torch.device("meta"):
            net = self.instantiate(scale, hparams)
            if self.fuse is not None:
                # What is deployed (and what srdistill writes by default) is the fused form.
                net, _ = self.fuse(net, self.resolve(hparams))
        return sum(p.numel() for p in net.parameters())

    def pad_multiple(self, hparams: Hparams, scale: int) -> int:
        return max(1, int(self.size_multiple(self.resolve(hparams), scale)))


def count_indexed(state: StateDict, prefix: str) -> int:
    """Number of consecutive ``prefix.N.`` children (0..N-1) present in ``state``."""
    seen = set()
    plen = len(prefix) + 1
    for key in state:
        if key.startswith(prefix + "."):
            head = key[plen:].split(".", 1)[0]
            if head.isdigit():
                seen.add(int(head))
    n = 0
    while n in seen:
        n += 1
    return n


def shape_of(state: StateDict, key: str) -> tuple[int, ...] | None:
    t = state.get(key)
    return None if t is None else tuple(int(s) for s in t.shape)


def is_square(n: int) -> bool:
    r = math.isqrt(n)
    return r * r == n
