"""Distributed helpers: one process per device under `torchrun` (NCCL on GPUs, gloo on CPU).

The same command line runs single-process (every helper is then a no-op) or under
`torchrun --nproc_per_node=N`, which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.
Gradients are averaged with one flattened all-reduce per step, which keeps the student's several
forward paths (global, local, clip) free of DistributedDataParallel's single-forward contract.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs and checkpoints."""
        return self.rank == 0


def enabled() -> bool:
    """True when a process group is running with more than one process."""
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not torch_dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
        atexit.register(shutdown)  # a rank exiting with the group up can abort in gloo's teardown ("terminate called")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def info() -> DistInfo:
    """DistInfo of the running process group (single process when none)."""
    if not enabled():
        return DistInfo()
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place sum (or max) across processes; unchanged when single-process."""
    if enabled():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX if op == "max" else torch_dist.ReduceOp.SUM)
    return tensor


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average .grad of the parameters across processes in one flattened all-reduce."""
    if not enabled():
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch_dist.all_reduce(flat)
    flat /= torch_dist.get_world_size()
    offset = 0
    for p in params:
        count = p.grad.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank src to every process."""
    if not enabled():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        torch_dist.broadcast(tensor.data, src=src)


def barrier() -> None:
    """Wait for every process."""
    if enabled():
        torch_dist.barrier()


def shutdown() -> None:
    """Leave the process group."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
