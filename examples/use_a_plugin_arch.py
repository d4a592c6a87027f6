"""Architectures from plugins work exactly like built-ins.

The "write your own architecture" example is the RFDN plugin in plugins/srdistill-rfdn: one
module exposing an ArchSpec and one entry-point line. Install it with
`pip install -e plugins/srdistill-rfdn`, then:
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import srdistill


def main() -> None:
    archs = srdistill.list_archs()
    if "rfdn" not in archs:
        raise SystemExit("install the example plugin first: pip install -e plugins/srdistill-rfdn")
    spec = archs["rfdn"]
    print(f"rfdn presets: {list(spec.presets)}; blocks of the default: {spec.blocks(spec.resolve())}")

    model = srdistill.build_model("rfdn", scale=4)
    path = srdistill.save_model(model, Path(tempfile.mkdtemp()) / "rfdn-x4.safetensors")
    again = srdistill.load_model(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(again(x), model.net.eval()(x))
    print(f"saved and reloaded {path.name}: {again.arch} x{again.scale}, {again.num_params:,} parameters")


if __name__ == "__main__":
    main()
