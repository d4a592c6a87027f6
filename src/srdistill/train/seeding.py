"""Per-rank random streams and random-number-generator state, stored as tensors so checkpoints
load with ``torch.load(weights_only=True)``. Seeding at build time is :mod:`srdistill.rng`."""

from __future__ import annotations

import random

import numpy as np
import torch

# Each rank gets its own torch stream for random operations inside the step (e.g. masks of a
# distillation method), derived from the run seed; the model is initialised before this.
_RANK_STREAM = 0x5EED


def seed_rank_stream(seed: int, rank: int) -> None:
    torch.manual_seed(int(np.random.SeedSequence([seed, _RANK_STREAM, rank]).generate_state(1)[0]))


def capture_rng() -> dict[str, object]:
    """The state of every generator the step may touch (torch CPU and CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, object] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
    }
    if py_gauss is not None:
        state["python_gauss"] = float(py_gauss)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, object]) -> None:
    torch.set_rng_state(state["torch"])
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, cached))
    py = tuple(int(v) for v in state["python"].tolist())
    random.setstate((state["python_version"], py, state.get("python_gauss")))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
