"""Exponential moving average of the student's weights (what the final file holds when enabled)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..precision import float32_region


class ModelEMA:
    """``ema = d * ema + (1 - d) * w`` after each update, with ``d`` ramped up as
    ``min(decay, (1 + n) / (10 + n))`` so a short run is not dominated by its random start.
    Buffers (e.g. running statistics) are copied, not averaged."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    @float32_region()  # the average is float32 whatever the step's autocast
    def update(self, net: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_params = [p for p in self.net.parameters()]
        params = [p.detach() for p in net.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_buf, buf in zip(self.net.buffers(), net.buffers()):
            ema_buf.copy_(buf)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "net": self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.net.load_state_dict(state["net"])
