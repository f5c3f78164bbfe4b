"""Single-process or DDP execution, chosen by the environment `torchrun` sets.

Under `torchrun --nproc_per_node N`, each process sees RANK, LOCAL_RANK and WORLD_SIZE and
joins one process group: NCCL on GPUs (one GPU per process, by local rank), gloo on CPU.
Without those variables the run is a plain single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Processes", "any_rank", "barrier", "setup", "teardown", "wrap"]


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank among `world_size` and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs and checkpoints; the others only train."""
        return self.rank == 0


def setup(device: torch.device) -> Processes:
    """Join the process group when launched by torchrun; otherwise run alone on `device`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), device)


def wrap(model: nn.Module, processes: Processes) -> nn.Module:
    """The module to train: `model` itself, or its DDP wrapper (gradients all-reduced)."""
    if processes.world_size <= 1:
        return model
    device_ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def barrier(processes: Processes) -> None:
    """Wait for every rank (no-op for a single process)."""
    if processes.world_size > 1:
        dist.barrier()


def any_rank(processes: Processes, value: int) -> int:
    """The largest of every rank's `value` (the value itself for a single process)."""
    if processes.world_size <= 1:
        return value
    flag = torch.tensor([value], device=processes.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def teardown(processes: Processes) -> None:
    """Leave the process group."""
    if processes.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
