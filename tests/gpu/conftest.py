"""GPU tests: every test here is marked ``gpu`` and skipped where torch has no CUDA device.

They run the real commands on CUDA (``scripts/gpu-check.sh`` part 1 runs ``pytest -m gpu``).
Data: tiny generated photos, so the tests need nothing but the tree.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    no_cuda = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(no_cuda)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    from cli_helpers import write_training_photos

    return write_training_photos(tmp_path_factory.mktemp("photos"), [f"p{i}.png" for i in range(4)])


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    """A small SwinIR teacher (unsafe in fp16: the routed and plain teacher passes must fall back)."""
    from srdistill import build_model, save_model

    path = tmp_path_factory.mktemp("teacher") / "swinir.safetensors"
    model = build_model("swinir", 4, {"img_size": 16, "window_size": 4, "depths": (2, 2), "embed_dim": 24, "num_heads": (2, 2)}, seed=1)
    save_model(model, path)
    return path
