"""``spandrel``: every family spandrel loads, as one architecture whose hyperparameters are the
family and its constructor arguments (JSON). A teacher for the output-level methods; the families
with declared blocks (see :mod:`.families`) are detected first and keep their own ids."""

from __future__ import annotations

import functools
import json
from typing import Any

from srdistill.archs.spec import ArchSpec, Detection, Hparams
from srdistill.errors import UsageError

from . import families, loader
from ._import import spandrel

DECLARED = {spec_family: spec for spec_family, spec in (
    ("HAT", families.HAT), ("DAT", families.DAT), ("Compact", families.SRVGG),
    ("OmniSR", families.OMNISR), ("SPAN", families.SPAN), ("PLKSR", families.PLKSR))}


def _config(hp: Hparams) -> dict[str, Any]:
    try:
        config = json.loads(hp["config"])
    except json.JSONDecodeError as exc:
        raise UsageError(f"spandrel option config must be a JSON object of constructor arguments ({exc})") from None
    if not isinstance(config, dict):
        raise UsageError("spandrel option config must be a JSON object of constructor arguments, e.g. config={\"num_feat\":32}")
    return config


def build(*, scale: int, family: str, config: str):
    return families.build_sized(family, scale, _config({"config": config}))


def detect(state) -> Detection | None:
    found = loader.find(state)
    if found is None:
        return None
    # Only what differs from the constructor's defaults: the same network has one config string.
    cls = loader.model_class(found.family)
    defaults = loader.class_defaults(cls)
    # A recorded scale argument differs from the model's scale (see loader._describe): always kept.
    config = {k: v for k, v in found.hparams.items() if k not in defaults or defaults[k] != v or k == loader.scale_key(cls)}
    return Detection(found.scale, {"family": found.family, "config": json.dumps(config, sort_keys=True)}, via=loader.via(found))


def _declared(hp: Hparams):
    spec = DECLARED.get(hp["family"])
    return None if spec is None or not spec.defaults else spec


def blocks(hp: Hparams) -> tuple[str, ...]:
    spec = _declared(hp)
    return spec.blocks(spec.resolve(_config(hp))) if spec else ()


def block_channels(hp: Hparams) -> tuple[int, ...]:
    spec = _declared(hp)
    return spec.block_channels(spec.resolve(_config(hp))) if spec else ()


@functools.cache
def _multiple(family: str, config: str, scale: int) -> int:
    return families._descriptor_facts(family, scale, config).size_multiple


def size_multiple(hp: Hparams, scale: int) -> int:
    return _multiple(hp["family"], json.dumps(_config(hp), sort_keys=True), scale)


SPEC = ArchSpec(
    id="spandrel",
    title="any architecture spandrel loads (output-level teacher)",
    build=build,
    detect=detect,
    defaults={"family": "Compact", "config": "{}"},
    presets={"spandrel": {}},
    blocks=blocks,
    block_channels=block_channels,
    scales=(1, 2, 3, 4, 8),
    size_multiple=size_multiple,
    detect_fallback=True,
    reference="https://github.com/chaiNNer-org/spandrel",
    small={"config": json.dumps({"num_conv": 2, "num_feat": 8}, sort_keys=True)},
    families=lambda: family_table(),
    adapt_state_dict=loader.as_built,
)


def family_table() -> list[dict[str, Any]]:
    """Every family spandrel's main registry holds, with the srdistill id that loads it and whether
    it has declared body blocks (feature-level methods: mipkd, fitnet, fakd) or is an output-level
    teacher only; restricted families (spandrel_extra_arches) are listed as refused."""
    restricted = loader.restricted_families()
    rows = []
    for support in spandrel().MAIN_REGISTRY.architectures("insertion"):
        family = str(support.architecture.id)
        spec = DECLARED.get(family)
        refused = family in restricted
        rows.append({"family": family, "name": support.architecture.name,
                     "arch": None if refused else (spec.id if spec else "spandrel"),
                     "blocks": bool(spec) and not refused,
                     "licence": loader.RESTRICTED_LICENCE if refused else None})
    listed = {row["family"] for row in rows}
    # Installed but kept out of spandrel's registry: listed so that `srdistill archs` says why they do not load.
    rows += [{"family": family, "name": family, "arch": None, "blocks": False, "licence": loader.RESTRICTED_LICENCE}
             for family in sorted(restricted - listed)]
    return rows
