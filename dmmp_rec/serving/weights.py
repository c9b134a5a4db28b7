"""Whole tensors out of a DistributedModelParallel state dict, sharded or not.

Export runs as one process, so every shard of every table is local: a ShardedTensor is
reassembled from its local shards by their offsets (DCP has already resharded the checkpoint to
world size 1). A table whose shards are not all here is an error, never a silently partial copy.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torch.distributed.tensor import DTensor

from dmmp_rec.errors import DmmpError


class ExportError(DmmpError, RuntimeError):
    """Export cannot produce a faithful artifact; the message names the tensor or file."""


def full_tensor(value: torch.Tensor, name: str) -> torch.Tensor:
    """The whole tensor behind a plain tensor, a DTensor or a fully local ShardedTensor.

    Args:
        value (torch.Tensor): a state dict entry.
        name (str): its key, for the ExportError when shards are missing (not one process).

    Returns:
        torch.Tensor: a detached CPU tensor of the full size.
    """
    if isinstance(value, DTensor):
        return value.full_tensor().detach().cpu()
    if not isinstance(value, ShardedTensor):
        return value.detach().cpu()
    shards = value.local_shards()
    if not shards:
        raise ExportError(f"{name}: no local shards; run export as a single process")
    out = torch.empty(tuple(value.size()), dtype=shards[0].tensor.dtype)
    covered = 0
    for shard in shards:
        offsets, sizes = shard.metadata.shard_offsets, shard.metadata.shard_sizes
        region = tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))
        out[region] = shard.tensor.detach().cpu().reshape(sizes)
        covered += shard.tensor.numel()
    if covered != out.numel():
        raise ExportError(
            f"{name}: only {covered} of {out.numel()} elements are local; "
            "run export as a single process (world size 1)"
        )
    return out


def embedding_tables(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The whole weight of every `<prefix><table>.weight` entry of `state`.

    Args:
        state (Mapping[str, torch.Tensor]): the model's state dict (sharded or not).
        prefix (str): the EBC's key prefix, e.g. "sparse.ebc.embedding_bags.".

    Returns:
        dict[str, torch.Tensor]: table name -> full CPU weight, [rows, dim]; ExportError when
        there is none.
    """
    tables = {}
    for key, value in state.items():
        if key.startswith(prefix) and key.endswith(".weight"):
            table = key[len(prefix) : -len(".weight")]
            tables[table] = full_tensor(value, key)
    if not tables:
        raise ExportError(f"no embedding tables under {prefix!r} in the model state")
    return tables
