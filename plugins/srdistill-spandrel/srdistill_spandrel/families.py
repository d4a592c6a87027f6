"""srdistill architecture specs for spandrel's families.

Six families declare body blocks (feature-level methods work with them) and get their own ids:
``hat``, ``dat``, ``srvgg`` (Real-ESRGAN's SRVGGNetCompact), ``omnisr``, ``spandrel-span`` (the
official SPAN layout; srdistill's own ``span`` is a different network) and ``plksr``. Every other
family spandrel can load is the generic ``spandrel`` architecture, whose hyperparameters are the
family name and its constructor arguments: a teacher for the output-level methods.

Size rules and safe dtypes are what spandrel's model descriptor reports, not chosen here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from srdistill.archs.spec import NCHW, ArchSpec, Detection, FeatureView, Hparams, TokenView

from . import loader
from ._import import SpandrelMissingError, available

SR_SCALES = (2, 3, 4)


class FirstOfTupleView:
    """Blocks that return a tuple whose first element is the B x C x H x W feature (SPAN's SPAB
    returns ``(out, out1, attention)``); a replacement swaps that element only."""

    name = "tuple[0]"

    def to_nchw(self, output: Any, args: tuple):
        return output[0]

    def from_nchw(self, feature, output: Any, args: tuple) -> Any:
        return (feature, *output[1:])


@functools.cache
def _descriptor_facts(family: str, scale: int, hparams_json: str) -> loader.Found:
    """What spandrel's descriptor says about one configuration (built once, weights random)."""
    import torch

    with torch.device("cpu"):  # spandrel reads the weights it describes: never meta tensors
        net = loader.build(family, scale, json.loads(hparams_json))
    found = loader.find(net.state_dict())
    if found is None or found.family != family:
        raise SpandrelMissingError(f"spandrel does not recognise its own {family} layout; upgrade spandrel")
    return found


class PadToMinimum:
    """spandrel's call API pads an input smaller than the family's minimum size and crops the
    output back; these forward hooks do the same, so the network srdistill runs (for any input a
    tile, a training patch or a test image gives it) behaves as spandrel's model. The state dict is
    untouched. A class, not closures: networks are deep-copied and may be pickled."""

    def __init__(self, minimum: int, scale: int):
        self.minimum, self.scale = minimum, scale
        self.sizes: list[tuple[int, int]] = []

    def before(self, module, args):
        import torch.nn.functional as F

        x = args[0]
        h, w = x.shape[-2:]
        self.sizes.append((h, w))
        pad_h, pad_w = max(0, self.minimum - h), max(0, self.minimum - w)
        if pad_h or pad_w:
            # spandrel's padding: reflect as far as reflection reaches (size - 1), replicate beyond.
            reflect_w, reflect_h = min(pad_w, w - 1), min(pad_h, h - 1)
            x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
            x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
        return (x, *args[1:])

    def after(self, module, args, output):
        h, w = self.sizes.pop()
        return output[..., : h * self.scale, : w * self.scale]


# spandrel's PLKSR convolutions that, in eval mode, write their result into their own input (an
# inference shortcut): a frozen teacher is in eval mode, yet MiPKD's routed pass differentiates
# through it, and autograd refuses a tensor it needs that was changed in place.
_IN_PLACE_WHEN_EVALUATING = {("spandrel.architectures.PLKSR.__arch.PLKSR", "PLKConv2d"),
                             ("spandrel.architectures.PLKSR.__arch.PLKSR", "RectSparsePLKConv2d")}


@functools.cache
def _out_of_place(cls: type) -> type:
    """``cls`` taking its training branch (split, convolve, concatenate: the same arithmetic,
    without the in-place write) in either mode; these modules hold no dropout or normalisation,
    so the mode changes nothing else. A subclass, not a hook: the state dict and the hooks
    srdistill inspects stay the network's own."""

    def forward(self, x):
        evaluating = not self.training
        self.training = True
        try:
            return cls.forward(self, x)
        finally:
            self.training = not evaluating

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": __name__, "__doc__": _out_of_place.__doc__})


def build_sized(family: str, scale: int, hparams: Mapping[str, Any]):
    """spandrel's network for one configuration, padding inputs below its minimum size."""
    import torch

    net = loader.build(family, scale, dict(hparams))
    if torch.get_default_device().type == "meta":
        return net  # counted, never run
    for module in net.modules():
        if (type(module).__module__, type(module).__name__) in _IN_PLACE_WHEN_EVALUATING:
            module.__class__ = _out_of_place(type(module))
    facts = _descriptor_facts(family, scale, json.dumps(dict(hparams), sort_keys=True))
    if facts.min_size > 1:
        hooks = PadToMinimum(facts.min_size, facts.scale)
        net.register_forward_pre_hook(hooks.before)
        net.register_forward_hook(hooks.after)
    return net


def _dtypes(found: loader.Found):
    import torch

    return (torch.float32,) + ((torch.bfloat16,) if found.supports_bfloat16 else ()) + ((torch.float16,) if found.supports_half else ())


def family_spec(
    arch_id: str,
    family: str,
    title: str,
    *,
    blocks: Callable[[Hparams], tuple[str, ...]],
    channels: Callable[[Hparams], tuple[int, ...]],
    presets: Mapping[str, Mapping[str, Any]],
    small: Mapping[str, Any],
    view: FeatureView = NCHW,
    reference: str = "",
) -> ArchSpec:
    """One spandrel family as an srdistill architecture; without spandrel, a spec whose every use
    raises the one-line install hint (so the rest of srdistill keeps working)."""
    if not available():
        return ArchSpec(
            id=arch_id, title=title + " (needs spandrel)", build=_needs_spandrel, detect=_never, defaults={},
            presets={}, blocks=lambda hp: (), block_channels=lambda hp: (), scales=SR_SCALES,
            detect_fallback=True, reference=reference,
        )
    cls = loader.model_class(family)
    key = loader.scale_key(cls)
    defaults = {k: v for k, v in loader.class_defaults(cls).items() if k != key}
    probe = _descriptor_facts(family, 4, json.dumps(small, sort_keys=True))

    def build(*, scale: int, **hparams):
        return build_sized(family, scale, hparams)

    def detect(state) -> Detection | None:
        found = loader.find(state)
        if found is None or found.family != family:
            return None
        return Detection(found.scale, found.hparams, via=loader.via(found))

    return ArchSpec(
        id=arch_id,
        title=title,
        build=build,
        detect=detect,
        defaults=defaults,
        presets=presets,
        blocks=blocks,
        block_channels=channels,
        scales=SR_SCALES,
        feature_view=view,
        size_multiple=lambda hp, scale: _descriptor_facts(family, scale, json.dumps(dict(hp), sort_keys=True)).size_multiple,
        min_size=max(1, probe.min_size),
        safe_dtypes=_dtypes(probe),
        detect_before=("spandrel",),
        detect_fallback=True,
        reference=reference,
        small=small,
        adapt_state_dict=loader.as_built,
    )


def _needs_spandrel(**_: Any):
    from ._import import spandrel

    spandrel()  # raises the install hint
    raise SpandrelMissingError("spandrel is required")


def _never(state) -> None:
    return None


def _indexed(prefix: str, count: Callable[[Hparams], int]) -> Callable[[Hparams], tuple[str, ...]]:
    return lambda hp: tuple(f"{prefix}.{i}" for i in range(count(hp)))


# -- the families with declared blocks ------------------------------------------------------------
# HAT and DAT: residual groups called as ``layer(tokens, (H, W), ...)``, like SwinIR's RSTB.
HAT = family_spec(
    "hat", "HAT", "HAT: Hybrid Attention Transformer (via spandrel)",
    blocks=_indexed("layers", lambda hp: len(hp["depths"])),
    channels=lambda hp: (hp["embed_dim"],) * len(hp["depths"]),
    presets={"hat": {}, "hat-s": {"embed_dim": 144, "compress_ratio": 24, "squeeze_factor": 24}},
    small={"embed_dim": 24, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4, "compress_ratio": 2,
           "squeeze_factor": 4, "mlp_ratio": 2.0, "upsampler": "pixelshuffle"},
    view=TokenView(size_arg=1),
    reference="https://github.com/XPixelGroup/HAT",
)
DAT = family_spec(
    "dat", "DAT", "DAT: Dual Aggregation Transformer (via spandrel)",
    blocks=_indexed("layers", lambda hp: len(hp["depth"])),
    channels=lambda hp: (hp["embed_dim"],) * len(hp["depth"]),
    presets={"dat": {}},
    small={"embed_dim": 16, "depth": [1, 1], "num_heads": [2, 2], "split_size": [2, 4], "expansion_factor": 2.0},
    view=TokenView(size_arg=1),
    reference="https://github.com/zhengchen1999/DAT",
)
# SRVGGNetCompact: the blocks are the conv+activation pairs; the activation closes each one.
SRVGG = family_spec(
    "srvgg", "Compact", "SRVGGNetCompact: Real-ESRGAN's compact VGG-style network (via spandrel)",
    blocks=lambda hp: tuple(f"body.{2 * k + 1}" for k in range(hp["num_conv"] + 1)),
    channels=lambda hp: (hp["num_feat"],) * (hp["num_conv"] + 1),
    # srvgg-general is realesr-general-x4v3's configuration; srvgg-compact a student a quarter its size.
    presets={"srvgg": {}, "srvgg-general": {"num_feat": 64, "num_conv": 32}, "srvgg-compact": {"num_feat": 32, "num_conv": 8}},
    small={"num_feat": 8, "num_conv": 2},
    reference="https://github.com/xinntao/Real-ESRGAN",
)
OMNISR = family_spec(
    "omnisr", "OmniSR", "Omni-SR: omni self-attention (via spandrel)",
    blocks=_indexed("residual_layer", lambda hp: hp["res_num"]),
    channels=lambda hp: (hp["num_feat"],) * hp["res_num"],
    presets={"omnisr": {}, "omnisr-small": {"num_feat": 32, "block_num": 1}},
    small={"num_feat": 16, "block_num": 1, "res_num": 1, "window_size": 8},
    reference="https://github.com/Francis0625/Omni-SR",
)
SPAN = family_spec(
    "spandrel-span", "SPAN", "SPAN, official layout (via spandrel)",
    blocks=lambda hp: tuple(f"block_{i}" for i in range(1, 7)),
    channels=lambda hp: (hp["feature_channels"],) * 6,
    presets={"spandrel-span": {}, "spandrel-span-s": {"feature_channels": 28}},
    small={"feature_channels": 8},
    view=FirstOfTupleView(),
    reference="https://github.com/hongyuanyu/SPAN",
)
PLKSR = family_spec(
    "plksr", "PLKSR", "PLKSR / RealPLKSR: partial large-kernel CNN (via spandrel)",
    blocks=lambda hp: tuple(f"feats.{i}" for i in range(1, hp["n_blocks"] + 1)),
    channels=lambda hp: (hp["dim"],) * hp["n_blocks"],
    presets={"plksr": {}, "plksr-tiny": {"dim": 32, "n_blocks": 12, "kernel_size": 13}},
    small={"dim": 16, "n_blocks": 2, "kernel_size": 7},
    reference="https://github.com/dslisleedh/PLKSR",
)
