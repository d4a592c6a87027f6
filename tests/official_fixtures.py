"""Access to tests/fixtures/official (checkpoints in official layouts + manifests), and the checks
every per-architecture test file makes against them.

The fixtures are a copy of ``shared/fixtures/official`` kept in the repository so that a fresh
clone runs these tests; test_official_loading.py checks the copy against the shared original.

The assertion helpers fail inside the calling test like an inline ``assert`` would; they exist so
that "reproduces the official output" means the same tolerance and input check in every file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"
LAYOUTS = FIXTURES / "layouts"
CASES: list[dict] = json.loads((FIXTURES / "cases.json").read_text())
MANIFESTS: list[Path] = sorted(LAYOUTS.glob("*.json"))
# Loading a fixture's output must match the official one this closely (max abs, 0..1 range).
OFFICIAL_OUTPUT_TOLERANCE = 1e-5


def _manifest_arch(path: Path) -> str:
    return json.loads(path.read_text())["arch"]


def cases_for(arch: str) -> list[dict]:
    return [c for c in CASES if c["arch"] == arch]


def cases_except(arch: str) -> list[dict]:
    return [c for c in CASES if c["arch"] != arch]


def case_named(file: str) -> dict:
    return next(c for c in CASES if c["file"] == file)


def manifests_for(arch: str) -> list[Path]:
    return [p for p in MANIFESTS if _manifest_arch(p) == arch]


def manifests_except(arch: str) -> list[Path]:
    return [p for p in MANIFESTS if _manifest_arch(p) != arch]


def load_case_state(case: dict) -> dict[str, torch.Tensor]:
    state = torch.load(FIXTURES / case["file"], weights_only=True, map_location="cpu")
    return state[case["wrapper"]] if case["wrapper"] else state


def load_case_io(case: dict) -> dict[str, torch.Tensor]:
    """The case's ``input`` and official ``output`` tensors (0..1)."""
    return load_file(FIXTURES / case["io"])


def manifest_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The manifest's info and a state dict of meta tensors with its shapes (no memory)."""
    info = json.loads(path.read_text())
    return info, {key: torch.empty(shape, device="meta") for key, shape in info["tensors"].items()}


def manifest_shapes(info: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape in info["tensors"].items()}


def as_detected(hparams: dict) -> dict:
    """Fixture hyperparameters as detection reports them: the JSON files spell tuples as lists."""
    return {key: tuple(v) if isinstance(v, list) else v for key, v in hparams.items()}


def meta_state(spec, scale: int, hparams: dict) -> dict[str, torch.Tensor]:
    """State dict of the built network on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return spec.instantiate(scale, hparams).state_dict()


def meta_shapes(spec, scale: int, hparams: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(t.shape) for key, t in meta_state(spec, scale, hparams).items()}


def loaded(spec, scale: int, hparams: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    """The built network in eval mode with ``state`` loaded strictly (every key, every shape)."""
    net = spec.instantiate(scale, hparams).eval()
    net.load_state_dict(state, strict=True)
    return net


def detect_as(spec, state, scale: int, hparams: dict):
    """``spec.detect(state)``, asserted to find exactly this scale and these hyperparameters."""
    det = spec.detect(state)
    assert det is not None, f"{spec.id} does not recognise the state dict"
    assert det.scale == scale
    assert det.hparams == as_detected(hparams)
    return det


def assert_reproduces_official_output(net: nn.Module, case: dict) -> None:
    """``net`` maps the case's input to the official output, without modifying the input."""
    io = load_case_io(case)
    x = io["input"].clone()
    with torch.no_grad():
        out = net(x)
    assert torch.equal(x, io["input"]), "forward modified its input"
    assert out.shape == io["output"].shape
    assert (out - io["output"]).abs().max().item() < OFFICIAL_OUTPUT_TOLERANCE


def assert_official_case(spec, case: dict) -> None:
    """The case's checkpoint detects to exactly its scale and hyperparameters with nothing assumed,
    loads strictly and reproduces the official output (for specs whose weights determine all)."""
    state = load_case_state(case)
    det = detect_as(spec, state, case["scale"], case["hparams"])
    assert det.assumed == ()
    assert_reproduces_official_output(loaded(spec, det.scale, det.hparams, state), case)


def detect_release_layout(spec, path: Path) -> tuple[dict, object]:
    """Detection from a release manifest's shapes alone gives its scale and hyperparameters, and
    those build exactly the released keys and shapes. Returns the manifest info and detection."""
    info, state = manifest_state(path)
    det = detect_as(spec, state, info["scale"], info["hparams"])
    assert meta_shapes(spec, det.scale, det.hparams) == manifest_shapes(info)
    return info, det


def block_modules(
    spec, scale: int, hparams: dict, paths: tuple[str, ...], channels: tuple[int, ...]
) -> dict[str, nn.Module]:
    """Asserts the spec declares these block paths and channels and that each path is a module of
    the built network; returns those modules by path."""
    assert spec.blocks(hparams) == paths
    assert spec.block_channels(hparams) == channels
    net = spec.instantiate(scale, hparams)
    return {path: net.get_submodule(path) for path in paths}
