"""torchrun / DistributedDataParallel glue: PyTorch's own engine, nothing home-made.

Under ``torchrun`` the environment names this process's rank; otherwise this is a world of one
and every collective below is a no-op. Rank 0 alone writes files and prints; decisions that end
or change the loop (a signal, the time budget, a non-finite loss, a failed save) are agreed on by
all ranks through one small all-reduce, so no rank waits forever for the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UsageError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of a small vector over all ranks (flags are 0/1, so a sum > 0 is "any")."""
        if self.distributed:
            values = values.to(self._comm_device())
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values.cpu()

    def all_ok(self, ok: bool) -> bool:
        return not bool(self.sum(torch.tensor([0.0 if ok else 1.0]))[0])

    def broadcast_object(self, value):
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise UsageError(f"environment variable {name}={os.environ[name]!r} is not an integer (set by torchrun)") from None


def init_distributed(device_type: str) -> DistContext:
    """Join the torchrun job if there is one (gloo on CPU, nccl on CUDA)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistContext(rank, world, local_rank, local_world, backend)
