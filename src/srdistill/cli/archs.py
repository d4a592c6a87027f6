"""``srdistill archs``: the registered architectures and their presets, and the bundled trained models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..bundled import bundled_models, recorded_set5_psnr, trained_as
from ._console import console, fmt_params, print_json, safe


def _described_by_header(path: Path) -> dict[str, Any] | None:
    """Arch, preset, scale, parameter count and provenance of a srdistill safetensors file, from
    its header alone (no tensor is read); None when the header lacks srdistill's metadata."""
    from safetensors import safe_open

    from ..archs.registry import get_arch

    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if not {"srdistill.arch", "srdistill.scale", "srdistill.hparams"} <= set(header):
        return None
    spec = get_arch(header["srdistill.arch"])
    scale = int(header["srdistill.scale"])
    hparams = spec.resolve(json.loads(header["srdistill.hparams"]))
    try:
        provenance = json.loads(header.get("srdistill.provenance", "null"))
    except json.JSONDecodeError:
        provenance = None
    preset = next((name for name in spec.presets if spec.resolve(preset=name) == hparams), None)
    return {
        "arch": spec.id,
        "preset": preset,
        "scale": scale,
        # Counted on the meta device: the same number the loaded network has (its shapes are
        # checked against these hparams when loading), without reading or allocating weights.
        "params": spec.param_count(scale, hparams),
        "metadata": {"provenance": provenance},
    }


def _described_by_loading(path: Path) -> dict[str, Any]:
    from ..models import load_model

    model = load_model(path)
    return {"arch": model.arch, "preset": model.preset, "scale": model.scale, "params": model.num_params,
            "metadata": model.metadata}


def bundled_report() -> list[dict]:
    """One entry per bundled model file: what it is, its size and the Set5 PSNR-Y it records.

    Files srdistill wrote are described from their header; any other file is loaded (which also
    detects its architecture, or says what is wrong with it)."""
    rows = []
    for bundled in bundled_models():
        try:
            found = _described_by_header(bundled.path)
        except Exception:  # noqa: BLE001 - a damaged file: loading it raises the precise error
            found = None
        found = found or _described_by_loading(bundled.path)
        rows.append(
            {
                "name": bundled.name,
                "role": bundled.role,
                "arch": found["arch"],
                "preset": found["preset"],
                "trained_as": trained_as(found["metadata"], found["preset"] or found["arch"]),
                "scale": found["scale"],
                "params": found["params"],
                "set5_psnr_y": recorded_set5_psnr(found["metadata"]),
                "file": str(bundled.path),
            }
        )
    return rows


def archs_report(bundled: list[dict] | None = None) -> list[dict]:
    """One entry per architecture; ``bundled_models`` lists the bundled models built on it."""
    from ..archs.registry import ARCHS, list_archs

    bundled = bundled_report() if bundled is None else bundled
    rows = []
    for arch_id, spec in list_archs().items():
        prov = ARCHS.provenance(arch_id)
        scale = 4 if 4 in spec.scales else spec.scales[0]
        presets = []
        for name in spec.presets:
            hp = spec.resolve(preset=name)
            presets.append(
                {
                    "name": name,
                    "hparams": hp,
                    "params_x4" if scale == 4 else f"params_x{scale}": spec.param_count(scale, hp),
                    "blocks": len(spec.blocks(hp)),
                }
            )
        rows.append(
            {
                "id": arch_id,
                "title": spec.title,
                "distribution": prov.distribution,
                "version": prov.version,
                "builtin": prov.builtin,
                "scales": list(spec.scales),
                "feature_view": spec.feature_view.name,
                "safe_dtypes": [str(d).replace("torch.", "") for d in spec.safe_dtypes],
                "presets": presets,
                "bundled_models": [b for b in bundled if b["arch"] == arch_id],
                # A catch-all loader's families (ArchSpec.families), e.g. every family spandrel loads.
                "families": spec.families() if spec.families is not None else None,
            }
        )
    return rows


def _families_table(row: dict) -> Table:
    families = row["families"]
    with_blocks = sum(1 for f in families if f.get("blocks"))
    table = Table(title=safe(f"model families the {row['id']} loader ({row['distribution']}) reads: {len(families)}, "
                             f"{with_blocks} with body blocks (every method); the rest are output-level teachers"))
    for col in ("family", "name", "loaded as", "feature-level (mipkd, fitnet, fakd)"):
        table.add_column(col)
    for f in families:
        refused = f.get("arch") is None
        table.add_row(
            safe(f["family"]), safe(f.get("name", "")),
            safe(f"refused: {f.get('licence') or 'restricted'}") if refused else safe(f["arch"]),
            "yes" if f.get("blocks") else "no",
        )
    return table


def _bundled_table(bundled: list[dict]) -> Table:
    table = Table(title="bundled models (use the name wherever a model file is asked for)")
    for col in ("name", "arch / preset", "scale", "params", "Set5 PSNR-Y", "file"):
        table.add_column(col, justify="right" if col in ("params", "Set5 PSNR-Y") else "left")
    for b in bundled:
        psnr = b["set5_psnr_y"]
        table.add_row(
            safe(b["name"]),
            safe(f"{b['arch']} / {b['trained_as']}"),
            f"x{b['scale']}",
            fmt_params(b["params"]),
            f"{psnr:.2f} dB" if psnr is not None else "-",
            safe(Path(b["file"]).name),  # the full path is in --json
        )
    return table


def archs(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List architectures (built-in and plugins), their presets, sizes and scales, and the bundled models."""
    bundled = bundled_report()
    rows = archs_report(bundled)
    if json_out:
        print_json(rows)
        return
    table = Table(title="srdistill architectures", show_lines=True)
    for col in ("arch", "from", "preset", "params (x4)", "blocks", "scales"):
        table.add_column(col, justify="right" if col in ("params (x4)", "blocks") else "left")
    for row in rows:
        source = f"{row['distribution']} {row['version']}"
        for i, preset in enumerate(row["presets"] or [{"name": "-", "blocks": "-"}]):
            count = next((v for k, v in preset.items() if k.startswith("params_")), None)
            table.add_row(
                safe(row["id"]) if i == 0 else "",
                safe(source) if i == 0 else "",
                safe(preset["name"]),
                fmt_params(count) if count is not None else "-",
                str(preset["blocks"]),
                ", ".join(f"x{s}" for s in row["scales"]) if i == 0 else "",
            )
    console.print(table)
    for row in rows:
        if row["families"]:
            console.print(_families_table(row))
    if bundled:
        console.print(_bundled_table(bundled))
