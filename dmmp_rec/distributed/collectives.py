"""Small collectives the model's own statistics need, on the process group's device."""

from __future__ import annotations

import torch
import torch.distributed as dist

from dmmp_rec.distributed.env import collective_device


def rank_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the ranks of a detached vector (itself on one process), reduced on the
    process group's device (CUDA under NCCL, CPU under gloo) and returned on `values`'s.
    Every rank must call it in the same step (the loss weighting calls it in training forwards,
    which all ranks run together)."""
    values = values.detach().clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = values.to(collective_device())
        dist.all_reduce(shared, op=dist.ReduceOp.SUM)
        values = shared.to(values.device) / dist.get_world_size()
    return values
