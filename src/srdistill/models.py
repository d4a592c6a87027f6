"""The model API: build, load (with detection), save and describe super-resolution models.

    model = srdistill.load_model("EDSR_x4.pt")       # any official checkpoint, unchanged
    sr = model(lr)                                     # N x 3 x H x W in [0, 1] -> N x 3 x sH x sW
    srdistill.save_model(model, "edsr_x4.safetensors")
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .archs.registry import get_arch, resolve_arch
from .archs.spec import ArchSpec, Detection
from .errors import (
    MetadataConflictError,
    SrdistillError,
    ModelFileError,
    ShapeMismatchError,
    UnknownArchitectureError,
    param,
)
from .bundled import resolve_model_ref
from .hparams import coerce_hparams
from .io.model_files import FLOAT_DTYPES, RawModelFile, read_model_file, write_safetensors
from .provenance import file_sha256
from .rng import seed_everything

META_PREFIX = "srdistill."


@dataclass
class SRModel:
    """A built network plus everything known about it."""

    spec: ArchSpec
    scale: int
    hparams: dict[str, Any]
    net: nn.Module
    metadata: dict[str, Any] = field(default_factory=dict)  # provenance etc. read from the file
    source: Path | None = None
    assumed: tuple[str, ...] = ()  # hparams the weights could not tell

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def arch(self) -> str:
        return self.spec.id

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(self.spec.blocks(self.hparams))

    @property
    def block_channels(self) -> tuple[int, ...]:
        return tuple(self.spec.block_channels(self.hparams))

    @property
    def pad_multiple(self) -> int:
        """Input sizes that need no internal padding (tiles are cut to this multiple)."""
        return self.spec.pad_multiple(self.hparams, self.scale)

    @property
    def preset(self) -> str | None:
        """The preset whose hyperparameters these are (in training or fused form), if any."""
        for name in self.spec.presets:
            hparams = self.spec.resolve(preset=name)
            if hparams == self.hparams:
                return name
            if self.spec.fuse is not None and self.scale in self.spec.scales:
                # A fused model's hparams say so (e.g. span's fused=True): fuse the preset on the
                # meta device (no memory, no arithmetic) to learn its fused hparams.
                with torch.device("meta"):
                    _, fused = self.spec.fuse(self.spec.instantiate(self.scale, hparams), hparams)
                if fused == self.hparams:
                    return name
        return None

    def to(self, *args, **kwargs) -> SRModel:
        self.net.to(*args, **kwargs)
        return self

    def fuse(self) -> SRModel:
        """The inference form (the spec's ``fuse``: re-parameterised convolutions merged), the same
        function; ``self`` when the architecture has one form only or is already fused."""
        if self.spec.fuse is None:
            return self
        net, hparams = self.spec.fuse(self.net, self.hparams)
        if net is self.net:
            return self
        return SRModel(self.spec, self.scale, dict(hparams), net, dict(self.metadata), self.source, self.assumed)


def build_model(
    arch_or_preset: str,
    scale: int,
    hparams: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
) -> SRModel:
    """A freshly initialised model from a preset name or arch id, with optional overrides.

    ``seed`` seeds every random generator first, so the same seed gives the same weights
    (``srdistill train --seed`` and ``distill --seed`` build their students through here). An
    unknown name, option or scale is a UsageError; an exception inside the architecture's own
    build is a bug of that architecture and propagates unchanged, never mistaken for a bad name.
    """
    spec, preset = resolve_arch(arch_or_preset)
    resolved = spec.resolve(hparams, preset=preset)
    if seed is not None:
        seed_everything(seed)
    return SRModel(spec, scale, resolved, spec.instantiate(scale, resolved))


# -- identification --------------------------------------------------------------------------------
def _detection_order(specs: Mapping[str, ArchSpec]) -> list[ArchSpec]:
    """Specific detectors before fallback ones (``detect_fallback``); within each, alphabetical,
    except that a spec comes before every spec it names in ``detect_before``."""
    ordered: list[ArchSpec] = []
    pending = dict(sorted(specs.items(), key=lambda item: (item[1].detect_fallback, item[0])))
    while pending:
        ready = [
            arch_id
            for arch_id in pending
            if not any(arch_id in other.detect_before for oid, other in pending.items() if oid != arch_id)
        ]
        if not ready:  # a cycle between plugins: fall back to alphabetical order
            ready = list(pending)
        ordered.append(pending.pop(ready[0]))
    return ordered


def _key_pattern(key: str) -> str:
    return re.sub(r"\.\d+", ".N", key)


def _closest(tensors: Mapping[str, torch.Tensor], specs: Mapping[str, ArchSpec]) -> list[tuple[float, str]]:
    """Key-name similarity to each arch's default preset, for 'did you mean' messages."""
    mine = {_key_pattern(k) for k in tensors}
    scores = []
    for arch_id, spec in specs.items():
        try:
            with torch.device("meta"):
                net = spec.instantiate(spec.scales[0], spec.resolve())
        except Exception:  # noqa: BLE001 - a broken plugin must not hide the real error
            continue
        theirs = {_key_pattern(k) for k in net.state_dict()}
        scores.append((len(mine & theirs) / max(1, len(mine | theirs)), arch_id))
    return sorted(scores, reverse=True)


def identify(
    raw: RawModelFile, arch: str | None = None, loader: str | None = None, skip: frozenset[str] = frozenset()
) -> tuple[ArchSpec, Detection, str]:
    """Which arch, scale and hparams a file holds, and how we know ("metadata" or "detected").

    ``loader`` limits which distributions' architectures may claim the file (see
    :mod:`srdistill.archs.loaders`; None: the enclosing ``loader_choice``, by default any).
    ``skip``: architectures already tried whose build did not fit the file's tensors."""
    from .archs import loaders

    meta_arch = raw.metadata.get(META_PREFIX + "arch")
    if meta_arch is not None:
        spec = get_arch(meta_arch)
        if not loaders.allows(spec.id, loader):
            raise MetadataConflictError(
                f"{raw.path}: its metadata says arch {spec.id!r}, registered by {loaders.distribution_of(spec.id)}, "
                f"which {param('loader', loaders.current(loader))} excludes; use {param('loader', loaders.AUTO)}"
            )
        try:
            scale = int(raw.metadata[META_PREFIX + "scale"])
            hp = coerce_hparams(spec.id, spec.defaults, json.loads(raw.metadata[META_PREFIX + "hparams"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise MetadataConflictError(f"{raw.path}: srdistill metadata is incomplete or malformed ({exc}); re-save the model") from None
        detected = spec.detect(raw.tensors)
        if detected is None:
            raise MetadataConflictError(
                f"{raw.path}: metadata says arch {meta_arch!r} but the tensors are not a {meta_arch} layout; the file was edited or mislabelled"
            )
        if detected.scale != scale:
            raise MetadataConflictError(
                f"{raw.path}: metadata says x{scale} but the tensors are a x{detected.scale} {meta_arch}; fix or drop the metadata"
            )
        for key, value in detected.hparams.items():
            if key not in detected.assumed and key in hp and hp[key] != value:
                raise MetadataConflictError(
                    f"{raw.path}: metadata says {key}={hp[key]!r} but the tensors say {key}={value!r}; fix or drop the metadata"
                )
        if arch is not None and arch != spec.id:
            raise MetadataConflictError(f"{raw.path}: you asked for arch {arch!r} but the file's metadata says {spec.id!r}")
        return spec, Detection(scale, spec.resolve(hp), via="srdistill metadata"), "metadata"

    specs = {arch: get_arch(arch)} if arch else loaders.candidate_specs(loader)
    specs = {key: spec for key, spec in specs.items() if key not in skip}
    for spec in _detection_order(specs):
        try:
            found = spec.detect(raw.tensors)
        except SrdistillError as exc:
            # A spec that recognised its layout and found it broken says so precisely; detectors
            # see tensors, not files, so the file is named here.
            if str(raw.path) not in exc.template:
                exc.args = (f"{raw.path}: {exc.template}", *exc.args[1:])
            raise
        except Exception as exc:  # noqa: BLE001 - a buggy plugin detector must not block the others
            import warnings

            warnings.warn(f"architecture {spec.id!r} detection failed on {raw.path.name}: {exc}", stacklevel=2)
            continue
        if found is not None:
            return spec, Detection(found.scale, spec.resolve(found.hparams), found.assumed, found.via), "detected"
    near = _closest(raw.tensors, specs)
    hint = ", ".join(f"{a} ({s:.0%} key match)" for s, a in near[:2] if s > 0) or "none"
    first = ", ".join(list(raw.tensors)[:3])
    if not arch and loaders.current(loader) != loaders.AUTO:
        raise UnknownArchitectureError(
            f"{raw.path}: no architecture that {param('loader', loaders.current(loader))} allows recognises this state dict "
            f"(keys start {first}); closest: {hint}. Try {param('loader', loaders.AUTO)}"
        )
    raise UnknownArchitectureError(
        f"{raw.path}: no installed architecture recognises this state dict (keys start {first}); closest: {hint}. "
        f"If it is another network, write an architecture plugin (README: 'Write an architecture plugin')"
    )


def loaded_by(spec: ArchSpec, how: str, via: str) -> dict[str, Any]:
    """Who claimed a file, for ``inspect``: the architecture, the distribution that registered it,
    and how it recognised the file (its metadata, its own key rules, or a loader library)."""
    from .archs.registry import ARCHS

    prov = ARCHS.provenance(spec.id)
    via = via or ("srdistill metadata" if how == "metadata" else f"{spec.id} state-dict layout")
    return {"arch": spec.id, "distribution": prov.distribution, "version": prov.version, "builtin": prov.builtin,
            "how": how, "via": via, "summary": f"{prov.distribution} {prov.version} ({via})"}


def check_state_dict(net: nn.Module, tensors: Mapping[str, torch.Tensor], what: str, path: Path | str) -> None:
    """Every key and shape must agree with the built model; only float tensors where it has floats."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {missing[0]!r}")
        if extra:
            parts.append(f"unexpected {len(extra)} key(s) e.g. {extra[0]!r}")
        raise ShapeMismatchError(f"{path}: does not match {what}: {'; '.join(parts)}")
    for key, ref in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise ShapeMismatchError(
                f"{path}: tensor {key!r} has shape {tuple(got.shape)} but {what} expects {tuple(ref.shape)}; "
                f"the file does not belong to this configuration (pass the right hyperparameters or fix the file)"
            )
        if ref.is_floating_point() and got.dtype not in FLOAT_DTYPES:
            raise ModelFileError(f"{path}: tensor {key!r} has dtype {got.dtype}, expected a float type; the file is corrupt")
        if not ref.is_floating_point() and got.dtype != ref.dtype:
            raise ModelFileError(f"{path}: buffer {key!r} has dtype {got.dtype}, expected {ref.dtype}")


def describe(spec: ArchSpec, scale: int, hparams: Mapping[str, Any]) -> str:
    short = ", ".join(f"{k}={v}" for k, v in hparams.items())
    return f"{spec.id} x{scale} ({short})"


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    hparams: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    loader: str | None = None,
) -> SRModel:
    """Load any supported model file: srdistill safetensors or an official checkpoint, unchanged.

    ``path`` may also name a bundled model (``teacher-x4``, ``student``; see :mod:`srdistill.bundled`)
    when no such file exists: an existing file always wins over the name.
    ``hparams`` overrides what detection cannot tell (e.g. EDSR ``res_scale``) or what the file
    says; shapes are still checked against the result.
    ``loader`` (``auto``, ``builtin`` or a plugin distribution) forces which side may claim a file
    that several could read; None follows the enclosing :func:`srdistill.archs.loaders.loader_choice`.
    """
    raw = read_model_file(resolve_model_ref(path))
    tried: set[str] = set()
    first_mismatch: ShapeMismatchError | None = None
    while True:
        try:
            spec, det, how = identify(raw, arch, loader, skip=frozenset(tried))
        except UnknownArchitectureError as exc:
            # Nothing else recognised it: the first mismatch says most. A named refusal (a
            # subclass: a plugin that knows the family and why it cannot serve) says more.
            if first_mismatch is not None and type(exc) is UnknownArchitectureError:
                raise first_mismatch from None
            raise
        resolved = dict(det.hparams)
        assumed = tuple(det.assumed)
        if hparams:
            overrides = coerce_hparams(spec.id, spec.defaults, hparams)
            resolved.update(overrides)
            assumed = tuple(a for a in assumed if a not in overrides)
        net = spec.instantiate(det.scale, resolved)
        tensors = spec.adapt_state_dict(raw.tensors) if spec.adapt_state_dict is not None else raw.tensors
        try:
            check_state_dict(net, tensors, describe(spec, det.scale, resolved), raw.path)
            break
        except ShapeMismatchError as exc:
            # Key rules can match a look-alike layout (MMRealSR's looks like RRDBNet's) that the
            # built network then does not fit: another architecture (a loader plugin) may read it.
            # Only for detection: metadata, an explicit arch or given hparams are the user's word.
            if how != "detected" or arch is not None or hparams:
                raise
            first_mismatch = first_mismatch or exc
            tried.add(spec.id)
    net.load_state_dict(tensors, strict=True)
    net.eval().to(device)
    meta = _read_provenance(raw)
    meta["identified_by"] = how
    meta["loaded_by"] = loaded_by(spec, how, det.via)
    meta["format"] = raw.format
    if raw.wrapper:
        meta["wrapper"] = raw.wrapper
    return SRModel(spec, det.scale, resolved, net, meta, raw.path, assumed)


def _read_provenance(raw: RawModelFile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.metadata.items():
        if key.startswith(META_PREFIX) and key[len(META_PREFIX):] in {"provenance"}:
            try:
                out[key[len(META_PREFIX):]] = json.loads(value)
            except json.JSONDecodeError:
                out[key[len(META_PREFIX):]] = value
        elif not key.startswith(META_PREFIX):
            out.setdefault("foreign", {})[key] = value
        else:
            out[key[len(META_PREFIX):]] = value
    return out


def model_metadata(model: SRModel, provenance: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The ``__metadata__`` srdistill writes: enough to rebuild the model without detection."""
    prov = dict(model.metadata.get("provenance") or {})
    prov.update(provenance or {})
    return {
        META_PREFIX + "format": "1",
        META_PREFIX + "arch": model.spec.id,
        META_PREFIX + "scale": str(model.scale),
        META_PREFIX + "hparams": json.dumps(model.hparams, sort_keys=True),
        META_PREFIX + "value_range": "0-1",
        META_PREFIX + "version": __version__,
        META_PREFIX + "provenance": json.dumps(prov, sort_keys=True, default=str),
    }


def save_model(
    model: SRModel,
    path: str | Path,
    *,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write the plain network as safetensors with srdistill metadata, atomically."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"{path}: srdistill writes safetensors only; use a .safetensors file name")
    return write_safetensors(path, model.net.state_dict(), model_metadata(model, provenance), overwrite=overwrite)


def convert_model(
    src: str | Path, dst: str | Path, *, overwrite: bool = False, hparams: Mapping[str, Any] | None = None, loader: str | None = None
) -> SRModel:
    """Any loadable checkpoint -> srdistill safetensors (metadata records where it came from)."""
    from .io.atomic import check_writable

    check_writable(dst, overwrite=overwrite)  # fail before loading a large file
    model = load_model(src, hparams=hparams, loader=loader)
    save_model(
        model,
        dst,
        overwrite=overwrite,
        provenance={"converted_from": model.source.name, "source_sha256": file_sha256(model.source),
                    "assumed": list(model.assumed)},
    )
    return model


def inspect_model(path: str | Path, *, hparams: Mapping[str, Any] | None = None, loader: str | None = None) -> dict[str, Any]:
    """A JSON-ready description of a model file (``loaded_by``: which architecture and distribution claimed it, and how)."""
    model = load_model(path, hparams=hparams, loader=loader)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in read_model_file(model.source).tensors.values()})
    given = sorted(coerce_hparams(model.spec.id, model.spec.defaults, hparams)) if hparams else []
    return {
        "file": str(model.source),
        "arch": model.spec.id,
        "preset": model.preset,
        "scale": model.scale,
        "hparams": model.hparams,
        "assumed": list(model.assumed),
        "given": given,  # set by the caller (--arch-opt), not read from the file
        "params": model.num_params,
        "dtype": dtypes,
        "value_range": model.spec.value_range,
        "mean_handling": model.spec.mean_handling,
        "size_multiple": model.pad_multiple,
        "safe_dtypes": [str(d).replace("torch.", "") for d in model.spec.safe_dtypes],
        "blocks": [{"path": p, "channels": c} for p, c in zip(model.blocks, model.block_channels)],
        "feature_view": model.spec.feature_view.name,
        "loaded_by": model.metadata["loaded_by"],
        "metadata": model.metadata,
    }
