"""The distillation tests run tiny models: one thread is as fast as two and does not spin on a
busy machine (OpenMP workers waiting for a shared core burn it)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
