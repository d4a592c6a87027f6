"""What spandrel knows about a state dict or a family, in srdistill's terms.

Detection runs spandrel's own registry in spandrel's own detection order (its ``before``
constraints keep look-alike layouts apart), once per state dict: every srdistill family spec
asks the same question and keeps only its own answer.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from dataclasses import dataclass
from typing import Any

from srdistill.errors import ModelFileError, UnknownArchitectureError

from ._import import import_quietly, spandrel

# The constructor argument that carries the upscaling factor, by whatever name each family uses.
SCALE_KEYS = ("upscale", "scale", "up_scale", "upscaling_factor", "upscale_factor")
# Channel-count arguments some constructors require without a default: srdistill models are RGB.
RGB_ARGS = ("num_in_ch", "num_out_ch", "in_nc", "out_nc", "in_chans", "in_ch", "out_ch")


class RestrictedArchitectureError(ModelFileError):
    """The file is a family from spandrel_extra_arches: architectures under non-commercial or
    copyleft licences, which srdistill-spandrel never loads, even when installed into spandrel."""


# What spandrel_extra_arches' README says of its architectures; spandrel records no licence per family.
RESTRICTED_LICENCE = "non-commercial or copyleft licences (see the spandrel_extra_arches README)"


class UnusableFamilyError(UnknownArchitectureError):
    """spandrel recognises the file, but the network is not an RGB image-to-image model."""


@dataclass(frozen=True)
class Found:
    family: str  # spandrel's architecture id, e.g. "HAT"
    scale: int
    hparams: dict[str, Any]  # JSON-typed constructor arguments, the scale argument removed
    size_multiple: int
    min_size: int
    supports_half: bool
    supports_bfloat16: bool
    tiling: str


def via(found: Found) -> str:
    """How a file was recognised, for ``srdistill inspect``."""
    return f"spandrel {spandrel().__version__} ModelLoader registry, family {found.family}"


def model_class(family: str) -> type:
    """The network class spandrel builds for ``family`` (what its architecture module exports)."""
    import torch

    support = spandrel().MAIN_REGISTRY.get(family)
    if support is None:
        raise UnknownArchitectureError(f"spandrel {spandrel().__version__} has no architecture {family!r}; upgrade spandrel or re-save the model")
    module = importlib.import_module(type(support.architecture).__module__)
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            return obj
    raise UnknownArchitectureError(f"spandrel architecture {family!r} exports no network class")


def class_defaults(cls: type) -> dict[str, Any]:
    """Constructor defaults that survive JSON (module-valued ones like ``norm_layer`` stay the class's)."""
    out = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        if param.default is inspect.Parameter.empty:
            if name in RGB_ARGS:
                out[name] = 3
            continue
        if _jsonable(param.default):
            out[name] = json.loads(json.dumps(param.default))
    return out


def scale_key(cls: type) -> str | None:
    params = inspect.signature(cls.__init__).parameters
    return next((k for k in SCALE_KEYS if k in params), None)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# The last state dict read, spandrel's reading of it and, where spandrel's loader renamed its keys,
# the tensors as the built network names them: every family spec asks about the same file in turn.
_last: tuple[object, Found | None, dict | None] | None = None


def find(state) -> Found | None:
    """spandrel's reading of ``state``, or None when no main-registry family claims it."""
    return _read(state)[1]


def as_built(state):
    """``state`` named as the network spandrel builds for it: spandrel loads some layouts under
    other names (ESRGAN's new-style RRDBNet keys, wrapper prefixes), so the file's own names may
    not be the network's."""
    renamed = _read(state)[2]
    return state if renamed is None else renamed


def _read(state) -> tuple[object, Found | None, dict | None]:
    global _last
    if _last is None or _last[0] is not state:
        with quiet_construction():
            found, renamed = _find_loud(state)
        _last = (state, found, renamed)
    return _last


def quiet_construction():
    """spandrel's constructors trip torch deprecation notices (meshgrid indexing, zero-size init)
    that tell a srdistill user nothing; real errors still raise."""
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.simplefilter("ignore", UserWarning)
    return _Exit(context)


class _Exit:
    def __init__(self, context):
        self.context = context

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def _find_loud(state) -> tuple[Found | None, dict | None]:
    sp = spandrel()
    # spandrel's loaders may add or rename keys; the caller's mapping stays untouched.
    canonical = sp.canonicalize_state_dict(dict(state))
    restricted = restricted_families()
    for support in sp.MAIN_REGISTRY.architectures("detection"):
        if support.detect(canonical):
            # spandrel_extra_arches.install() puts its families into the main registry itself.
            if str(support.architecture.id) in restricted:
                _refuse(support.architecture.name)
            desc = support.architecture.load(canonical)
            built = desc.model.state_dict()
            renamed = None if set(built) == set(state) else built
            return _describe(support.architecture, desc), renamed
    _refuse_restricted(canonical)
    return None, None


def restricted_families() -> frozenset[str]:
    """Ids of the families spandrel_extra_arches provides (empty when it is not installed)."""
    registry = _extra_registry()
    return frozenset(str(support.architecture.id) for support in registry) if registry is not None else frozenset()


def _extra_registry():
    spandrel()  # the extra package imports spandrel (and torchvision) first: the same repair applies
    try:
        extra = import_quietly("spandrel_extra_arches")
    except ImportError:
        return None
    return getattr(extra, "EXTRA_REGISTRY", None)


def _refuse(name: str):
    raise RestrictedArchitectureError(
        f"this is a {name} model, a family from spandrel_extra_arches, whose architectures are under {RESTRICTED_LICENCE}; "
        f"srdistill-spandrel does not load them: distil from a model under a permissive licence, or use the model under its own terms"
    )


def _describe(architecture, desc) -> Found:
    sp = spandrel()
    family = str(architecture.id)
    if not isinstance(desc, sp.ImageModelDescriptor) or desc.input_channels != 3 or desc.output_channels != 3:
        raise UnusableFamilyError(
            f"spandrel recognises a {architecture.name} model ({desc.purpose}, {desc.input_channels}->{desc.output_channels} channels); "
            f"srdistill distils RGB image-to-image models only"
        )
    if _has_own_call(desc):
        raise UnusableFamilyError(
            f"spandrel runs {architecture.name} models through its own call function (it transforms the input or "
            f"picks among outputs), so the bare network is not the model; srdistill cannot distil from or to it"
        )
    cls = type(desc.model)
    hparams = dict(getattr(desc.model, "hyperparameters", {}))
    defaults = class_defaults(cls)
    kept = {}
    for key, value in hparams.items():
        if _jsonable(value):
            kept[key] = json.loads(json.dumps(value))
        elif key in defaults or value is not inspect.signature(cls.__init__).parameters[key].default:
            raise ModelFileError(f"spandrel's {family} was built with {key}={value!r}, which srdistill cannot record; not supported")
    # The constructor's scale argument is the model's scale, except in layouts that shuffle pixels
    # first (ESRGAN x2/x1 files: a x4 body behind a pixel-unshuffle): there it stays recorded.
    if kept.get(scale_key(cls) or "") == int(desc.scale):
        kept.pop(scale_key(cls))
    req = desc.size_requirements
    return Found(
        family=family,
        scale=int(desc.scale),
        hparams=kept,
        size_multiple=int(req.multiple_of),
        min_size=int(req.minimum),
        supports_half=bool(desc.supports_half),
        supports_bfloat16=bool(desc.supports_bfloat16),
        tiling=desc.tiling.name.lower(),
    )


def _has_own_call(desc) -> bool:
    """Whether spandrel calls this family through a ``call_fn`` of its own (value-range shifts,
    tuple outputs) instead of ``model(image)``, which is what srdistill runs."""
    default = type(desc).__init__.__code__.co_filename
    code = getattr(getattr(desc, "_call_fn", None), "__code__", None)
    return code is not None and code.co_filename != default


def _refuse_restricted(canonical) -> None:
    """A file only the restricted extra families know is refused by name, not reported unknown."""
    registry = _extra_registry()
    for support in registry.architectures("detection") if registry is not None else ():
        if support.detect(canonical):
            _refuse(support.architecture.name)


def build(family: str, scale: int, hparams: dict[str, Any]):
    cls = model_class(family)
    args = {**{k: v for k, v in class_defaults(cls).items() if k in RGB_ARGS}, **hparams}
    key = scale_key(cls)
    if key is not None:
        args.setdefault(key, scale)
    # JSON lists back to the tuples a constructor default may be.
    defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
    for name, value in args.items():
        if isinstance(defaults.get(name), tuple) and isinstance(value, list):
            args[name] = tuple(value)
    import torch

    with quiet_construction():
        if torch.get_default_device().type == "meta":
            # Some constructors (HAT's and DAT's drop-path schedules) read tensor values, which
            # meta tensors do not have: count parameters on a CPU instance instead.
            with torch.device("cpu"):
                return cls(**args)
        return cls(**args)
