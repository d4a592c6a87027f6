"""Tiny images and a tiny model so that every training test runs in seconds on two cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# edsr with 8 features and one block at x2, 8x8 LR patches: a step takes milliseconds.
TINY_ARGS = [
    "--arch", "edsr-lite", "--arch-opt", "n_feats=8", "--arch-opt", "n_resblocks=1",
    "--scale", "2", "--patch-size", "8", "--batch-size", "4", "--threads", "1",
]
TINY_CONFIG = dict(
    arch="edsr-lite", arch_opt={"n_feats": 8, "n_resblocks": 1}, scale=2, patch_size=8, batch_size=4, threads=1,
)


def write_images(folder: Path, count: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Smooth random RGB images (upsampled noise) of slightly different sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = (rng.random((8, 10, 3)) * 255).astype(np.uint8)
        h, w = size[0] + 2 * i, size[1] + 4 * i
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture
def images(tmp_path) -> Path:
    return write_images(tmp_path / "images")
