"""Load any SR checkpoint (official layout or srdistill safetensors), inspect it, run it.

    python examples/load_inspect_run.py path/to/EDSR_x4.pt [image.png]

Without arguments it uses an official-layout fixture from ../shared if present, or builds a
fresh `edsr-lite` and saves it first, so the example always runs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import srdistill


def pick_checkpoint() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    fixture = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official" / "swinir_lightweight_small_x2.pth"
    if fixture.exists():
        return fixture
    model = srdistill.build_model("edsr-lite", scale=4)
    return srdistill.save_model(model, Path(tempfile.mkdtemp()) / "edsr-lite-x4.safetensors")


def main() -> None:
    path = pick_checkpoint()
    info = srdistill.inspect_model(path)
    print(f"{path.name}: {info['arch']} x{info['scale']}, {info['params']:,} parameters")
    print("  hyperparameters:", info["hparams"])
    print("  block boundaries:", [b["path"] for b in info["blocks"]])

    model = srdistill.load_model(path)
    if len(sys.argv) > 2:
        rgb = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32) / 255
        lr = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    else:
        lr = torch.rand(1, 3, 24, 32)
    with torch.inference_mode():
        sr = model(lr)  # N x 3 x H x W in [0, 1] -> N x 3 x sH x sW
    print(f"  upscaled {tuple(lr.shape)} -> {tuple(sr.shape)}")
    assert sr.shape[-2:] == (lr.shape[-2] * model.scale, lr.shape[-1] * model.scale)


if __name__ == "__main__":
    main()
