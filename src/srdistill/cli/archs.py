"""``srdistill archs``: the registered architectures and their presets, and the bundled trained models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..bundled import bundled_models, recorded_set5_psnr, trained_as
from ..models import load_model
from ..registry import ARCHS, list_archs
from ._console import console, fmt_params, print_json, safe


def bundled_report() -> list[dict]:
    """One entry per bundled model file: what it is, its size and the Set5 PSNR-Y it records."""
    rows = []
    for bundled in bundled_models():
        model = load_model(bundled.path)
        rows.append(
            {
                "name": bundled.name,
                "role": bundled.role,
                "arch": model.arch,
                "preset": model.preset,
                "trained_as": trained_as(model.metadata, model.preset or model.arch),
                "scale": model.scale,
                "params": model.num_params,
                "set5_psnr_y": recorded_set5_psnr(model.metadata),
                "file": str(bundled.path),
            }
        )
    return rows


def archs_report(bundled: list[dict] | None = None) -> list[dict]:
    """One entry per architecture; ``bundled_models`` lists the bundled models built on it."""
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
            }
        )
    return rows


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
    if bundled:
        console.print(_bundled_table(bundled))
