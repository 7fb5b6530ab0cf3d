"""Data parallelism across processes started by `torchrun` (DDP semantics).

Every rank reads the same global batch (same seed, same order) and trains on its
slice; gradients are summed across ranks with one all-reduce per step, and each
rank's loss is its share of the global batch's loss (variances and token counts
are global sums), so the update equals one process's on the whole batch up to
floating-point summation order. Gradients are reduced by hand rather than through
`DistributedDataParallel` because several SAEs with data-dependent AuxK terms
share one step; the communication is the same all-reduce DDP does.

Backend: NCCL with one GPU per rank on CUDA, gloo on the CPU (used by the tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


class DataParallel:
    """This process's place among `world` ranks; world 1 means no communication."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.rank, self.world = rank, world

    @classmethod
    def from_env(cls, device: str) -> tuple[DataParallel, str]:
        """Join the torchrun group if WORLD_SIZE > 1; returns it and this rank's device.

        On CUDA each rank takes GPU LOCAL_RANK.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size()), device

    @property
    def is_main(self) -> bool:
        """Whether this rank writes outputs."""
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch x: [B, D]."""
        if self.world == 1:
            return x
        if len(x) % self.world:
            raise ValueError(
                f"sae.batch_size={len(x)} must be divisible by the {self.world} ranks"
            )
        n = len(x) // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of a (non-differentiable) tensor over ranks."""
        if self.world == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t

    def any(self, mask: torch.Tensor) -> torch.Tensor:
        """Elementwise OR of a bool tensor over ranks."""
        if self.world == 1:
            return mask
        t = mask.to(torch.uint8)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.bool()

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over ranks, in one flat all-reduce."""
        if self.world == 1:
            return
        params = list(params)
        for p in params:
            if p.grad is None:  # every rank must send the same layout
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
