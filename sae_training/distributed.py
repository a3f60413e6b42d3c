"""Data-parallel training under ``torchrun`` (torch.distributed + DistributedDataParallel).

Each process reads its own shard of the data (the disk cache: ``rank::world_size`` rows of every global
batch; text: every world_size-th context of the shared stream), so no two processes train on the same
token. DDP averages the gradients, so with equal shares the update equals single-process training on the
whole batch. Everything that depends on the whole batch is computed globally: dead-latent counts, the
batch-level selections of Mutual / Feature Choice and their running buffers, the variances that normalise
the auxiliary losses. gloo on CPU; nccl on CUDA, where each process first binds its GPU
(``torch.cuda.set_device(local_rank)``) and every collective carries tensors on that device (NCCL cannot
carry CPU tensors; ``check_placement`` says so by name rather than failing inside NCCL).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    """This process's index."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Index on this machine (picks the CUDA device)."""
    backend: str = "gloo"
    """torch.distributed backend (gloo on CPU, nccl on CUDA)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process.

    On CUDA the process binds GPU ``LOCAL_RANK`` before the group is created: NCCL ties its communicator
    to the current device, and without it every process would use GPU 0."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def check_placement(t: torch.Tensor, info: DistInfo) -> None:
    """NCCL carries CUDA tensors only: name the offending tensor's device instead of failing in NCCL."""
    if info.backend == "nccl" and t.device.type != "cuda":
        raise RuntimeError(
            f"a collective got a tensor on {t.device} under NCCL; create it on the training device"
        )


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        check_placement(t, info)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_min(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        check_placement(t, info)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def all_gather_rows(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every process's rows (equal row counts), in rank order."""
    if not info.enabled:
        return t
    check_placement(t, info)
    parts = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def global_batch_variance(t: torch.Tensor, info: DistInfo | None) -> torch.Tensor:
    """mean over the global batch of ||t - mean(t)||^2 (t: [tokens, d]), in float64 sums."""
    if info is None or not info.enabled:
        return (t - t.mean(0)).pow(2).sum(-1).mean()
    t64 = t.double()
    packed = torch.cat([t64.sum(0), t64.pow(2).sum().reshape(1), t64.new_tensor([t.shape[0]])])
    packed = all_reduce_sum(packed, info)
    total, sq, n = packed[:-2], packed[-2], packed[-1]
    return ((sq - total.pow(2).sum() / n) / n).to(t.dtype)


def broadcast_object(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class StepModule(nn.Module):
    """Wraps a dictionary so DDP sees the training step as ``forward`` (DDP hooks gradients of forward)."""

    def __init__(self, sae: nn.Module):
        super().__init__()
        self.sae = sae

    def forward(self, step_input):
        return self.sae.sparse_training_step(step_input)


def wrap(sae: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP-wrapped step module (plain step module for one process)."""
    module = StepModule(sae)
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
