"""Process-group setup for multi-GPU training with ``torchrun`` (DistributedDataParallel).

Single process is the default: :func:`init_distributed` returns a world of one and touches nothing unless
``WORLD_SIZE`` > 1 is set (as ``torchrun`` does). Then it initialises the default process group (NCCL on CUDA,
gloo on CPU), pins ``cuda:LOCAL_RANK`` and every rank trains on its shard of each epoch's video order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and the device this process trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda_index(self) -> int | None:
        return self.device.index if self.device.type == "cuda" else None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:i``; plain ``cuda`` means ``cuda:local_rank``."""
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name} requested but CUDA is not available")
        dev = torch.device(name)
        return torch.device("cuda", dev.index if dev.index is not None else local_rank)
    raise ValueError(f"device must be cpu or cuda[:i], got {name!r}")


def init_distributed(device: str, environ: dict[str, str] | None = None) -> DistContext:
    """Read ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; initialise the process group when the world is > 1."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    else:
        rank, local_rank = 0, 0
    return DistContext(rank, world, local_rank, dev)


def shard(order: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's items of ``order``; padded by wrapping so that every rank gets the same count."""
    items = list(order)
    if world_size <= 1 or not items:
        return items
    per_rank = -(-len(items) // world_size)
    padded = (items * (per_rank * world_size // len(items) + 1))[:per_rank * world_size]
    return padded[rank::world_size]


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is set on any rank (an all-reduce; local value for a single process)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for a single process)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op for a single process)."""
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group this module created, once every rank got here: a rank that tears its
    gloo pairs down while another still writes its checkpoints aborts ("terminate called ...", exit -6)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
