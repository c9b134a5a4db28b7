"""Small collectives on the process group's device: the loss weighting's rank mean, and the
rank shares and gathers that validation, evaluation and export all use. Rows scored for
metrics go to rank 0 alone (`on_main`), never to every rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

from dmmp_rec.distributed.env import collective_device

T = TypeVar("T")


def rank_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the ranks of a detached vector (itself on one process).

    Reduced on the process group's device (CUDA under NCCL, CPU under gloo) and returned on
    `values`'s. Every rank must call it in the same step (the loss weighting calls it in training
    forwards, which all ranks run together).

    Args:
        values (torch.Tensor): this rank's values, any shape; not modified.

    Returns:
        torch.Tensor: the element-wise mean over ranks, detached, on values' device.
    """
    values = values.detach().clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = values.to(collective_device())
        dist.all_reduce(shared, op=dist.ReduceOp.SUM)
        values = shared.to(values.device) / dist.get_world_size()
    return values


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one.

    Returns:
        tuple[int, int]: this process's rank and the number of ranks.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous share [lo, hi) of `n` rows (shares differ by at most one).

    Args:
        n (int): rows in all.
        rank (int): the rank, in [0, world_size).
        world_size (int): the number of ranks, >= 1.

    Returns:
        tuple[int, int]: lo and hi, row indices.
    """
    return rank * n // world_size, (rank + 1) * n // world_size


def gather_shares(local: torch.Tensor, n: int, world_size: int) -> torch.Tensor:
    """All ranks' shares of an [rows, ...] tensor, concatenated in rank order. Collective.

    Args:
        local (torch.Tensor): this rank's share ([hi - lo, ...] of `share_bounds`).
        n (int): rows in all (sets each rank's share size).
        world_size (int): the number of ranks; 1 returns `local` as it is.

    Returns:
        torch.Tensor: [n, ...], on the process group's device (a GPU under NCCL).
    """
    if world_size == 1:
        return local
    sizes = [share_bounds(n, r, world_size) for r in range(world_size)]
    most = max(hi - lo for lo, hi in sizes)
    padded = torch.zeros((most, *local.shape[1:]), dtype=local.dtype, device=collective_device())
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: hi - lo] for p, (lo, hi) in zip(parts, sizes, strict=True)])


def gather_to_main(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Every rank's arrays concatenated in rank order, on rank 0 only. Collective.

    A production day's rows are GBs, and only the rank that computes the metrics needs them.

    Args:
        arrays (dict[str, np.ndarray]): this rank's rows, the same keys on every rank.

    Returns:
        dict[str, np.ndarray] | None: the concatenated arrays on rank 0 (and on a single
        process, `arrays` itself); None on the other ranks.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return arrays
    main = dist.get_rank() == 0
    parts: list[dict[str, np.ndarray] | None] | None = (
        [None] * dist.get_world_size() if main else None
    )
    dist.gather_object(arrays, parts, dst=0)
    if parts is None:
        return None
    return {k: np.concatenate([p[k] for p in parts if p is not None]) for k in arrays}


class _FailedOnMain:
    def __init__(self, error: Exception) -> None:
        self.error = error


def on_main(arrays: dict[str, np.ndarray], compute: Callable[[dict[str, np.ndarray]], T]) -> T:
    """`compute` over every rank's rows (in rank order), run on rank 0 alone. Collective.

    Its (small) result is sent to every rank, so all ranks take the same decisions from it. An
    error in `compute` is raised on every rank, none is left waiting.

    Args:
        arrays (dict[str, np.ndarray]): this rank's rows, the same keys on every rank.
        compute (Callable[[dict[str, np.ndarray]], T]): what to compute from all rows; its
            result must be picklable.

    Returns:
        T: compute's result, on every rank.
    """
    rows = gather_to_main(arrays)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        assert rows is not None
        return compute(rows)
    result: list[object] = [None]
    if rows is not None:
        try:
            result[0] = compute(rows)
        except Exception as error:  # noqa: BLE001 -- re-raised below, on every rank
            result[0] = _FailedOnMain(error)
    dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], _FailedOnMain):
        raise result[0].error
    return cast(T, result[0])
