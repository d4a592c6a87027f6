"""``srdistill archs``: the registered architectures and their presets."""

from __future__ import annotations

import typer
from rich.table import Table

from ..registry import ARCHS, list_archs
from ._console import console, fmt_params, print_json, safe


def archs_report() -> list[dict]:
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
            }
        )
    return rows


def archs(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List architectures (built-in and plugins), their presets, sizes and scales."""
    rows = archs_report()
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
