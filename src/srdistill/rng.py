"""Seeding every random generator a model build or a run may draw from.

Below every layer that builds models (``models.build_model(seed=...)``) and trains them
(:mod:`srdistill.train.seeding` keeps the per-rank streams and checkpointed states).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators, all from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
