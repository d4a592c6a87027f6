"""Shared access to ../shared/fixtures/official (checkpoints in official layouts + manifests)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
FIXTURES = SHARED / "fixtures" / "official"
CASES: list[dict] = json.loads((FIXTURES / "cases.json").read_text())
MANIFESTS: list[Path] = sorted((FIXTURES / "layouts").glob("*.json"))


def cases_for(arch: str) -> list[dict]:
    return [c for c in CASES if c["arch"] == arch]


def manifests_for(arch: str) -> list[Path]:
    return [p for p in MANIFESTS if json.loads(p.read_text())["arch"] == arch]


def load_case_state(case: dict) -> dict[str, torch.Tensor]:
    state = torch.load(FIXTURES / case["file"], weights_only=True, map_location="cpu")
    return state[case["wrapper"]] if case["wrapper"] else state


def manifest_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The manifest's info and a state dict of meta tensors with its shapes (no memory)."""
    info = json.loads(path.read_text())
    return info, {key: torch.empty(shape, device="meta") for key, shape in info["tensors"].items()}


def meta_shapes(spec, scale: int, hparams: dict) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = spec.instantiate(scale, hparams)
    return {key: tuple(t.shape) for key, t in net.state_dict().items()}
