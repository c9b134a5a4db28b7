"""Query and item vectors of the student, from catalogue tables (items.parquet, users.parquet).

Retrieval scores a user against the whole corpus, so items and users are encoded from their own
catalogues, one side's feature columns at a time. Under DistributedModelParallel the sharded EBC
runs collectives: every rank encodes a contiguous share of the rows, all ranks make the same
number of EBC calls (a rank with fewer batches encodes one row more and drops it), and the
shares are all-gathered, so every rank returns the full, identically ordered array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.console.progress import track
from dmmp_rec.data.catalogue import item_side, user_side
from dmmp_rec.data.id_policy import fold_ids
from dmmp_rec.distributed.env import collective_device

__all__ = ["item_side", "user_side"]  # re-exported: callers build KJTs of one side

_CPU = torch.device("cpu")


class RetrievalModel(Protocol):
    """What encoding needs: a DMMPModel, or `dmp.module` of a DistributedModelParallel."""

    def query_vector(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor: ...

    def item_vector(self, features: KeyedJaggedTensor) -> torch.Tensor: ...

    def user_gate(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor: ...


def _column(table: pa.Table, spec: FeatureSpec, where: str) -> pa.Array:
    if spec.name not in table.column_names:
        raise ValueError(
            f"{where}: feature column {spec.name!r} is missing; columns: {table.column_names}"
        )
    arr = table.column(spec.name).combine_chunks()
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{where}: row {row}: column {spec.name!r}: null value")
    is_list = pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)
    if is_list != spec.multi_valued:
        want = "a list column (multi_valued)" if spec.multi_valued else "an integer column"
        raise ValueError(f"{where}: column {spec.name!r}: expected {want}, found {arr.type}")
    return arr


def table_kjt(table: pa.Table, specs: list[FeatureSpec], where: str = "") -> KeyedJaggedTensor:
    """A KJT of `specs` (in that key order) from Parquet columns; out-of-range ids follow each
    feature's `out_of_range` policy, exactly as in the training loader."""
    n = table.num_rows
    values, lengths = [], []
    for spec in specs:
        arr = _column(table, spec, where)
        if spec.multi_valued:
            offsets = arr.offsets.to_numpy().astype(np.int64)
            child = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
            if child.null_count:
                raise ValueError(f"{where}: column {spec.name!r}: null id in a list")
            ids = child.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            lengths.append(np.diff(offsets).astype(np.int32))
        else:
            ids = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            lengths.append(np.ones(n, dtype=np.int32))
        ids, _ = fold_ids(ids, spec, f"{where}: column {spec.name!r}" if where else "")
        values.append(np.asarray(ids, dtype=np.int64))
    return KeyedJaggedTensor(
        keys=[s.name for s in specs],
        values=torch.from_numpy(np.concatenate(values) if values else np.empty(0, np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths) if lengths else np.empty(0, np.int32)),
    )


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous share [lo, hi) of `n` rows (shares differ by at most one)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def _gather_rows(local: torch.Tensor, n: int, world_size: int) -> torch.Tensor:
    """All ranks' shares of an [rows, ...] tensor, concatenated in rank order, on the process
    group's device (where the gather runs: a GPU under NCCL)."""
    if world_size == 1:
        return local
    sizes = [share_bounds(n, r, world_size) for r in range(world_size)]
    most = max(hi - lo for lo, hi in sizes)
    padded = torch.zeros((most, *local.shape[1:]), dtype=local.dtype, device=collective_device())
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: hi - lo] for p, (lo, hi) in zip(parts, sizes, strict=True)])


@torch.no_grad()
def _encode(
    table: pa.Table,
    specs: list[FeatureSpec],
    encode: Callable[[KeyedJaggedTensor], list[torch.Tensor]],
    batch_size: int,
    device: torch.device,
    where: str,
    progress: bool,
) -> list[np.ndarray]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = table.num_rows
    if n == 0:
        raise ValueError(f"{where}: no rows to encode")
    rank, world_size = rank_and_world()
    lo, hi = share_bounds(n, rank, world_size)
    most = max(b - a for a, b in (share_bounds(n, r, world_size) for r in range(world_size)))
    calls = -(-most // batch_size)  # the same on every rank: collectives stay matched
    outputs: list[list[torch.Tensor]] = []
    steps = track(range(calls), f"encoding {where}", "batch", progress and rank == 0)
    for c in steps:
        start, stop = lo + c * batch_size, min(hi, lo + (c + 1) * batch_size)
        real = stop > start
        # a rank out of rows encodes one row anyway (the call count must match) and keeps
        # none of it: [:0] still carries the output's width for the gather
        rows = table.slice(start, stop - start) if real else table.slice(min(lo, n - 1), 1)
        out = encode(table_kjt(rows, specs, f"{where} rows {start}..{stop}").to(device))
        outputs.append([o.detach().float()[: stop - start if real else 0] for o in out])
    return [
        _gather_rows(torch.cat([o[j] for o in outputs]), n, world_size).cpu().numpy()
        for j in range(len(outputs[0]))
    ]


def encode_items(
    model: RetrievalModel,
    features: FeaturesConfig,
    items: pa.Table,
    batch_size: int = 4096,
    device: torch.device = _CPU,
    progress: bool = False,
) -> np.ndarray:
    """Item vectors [num_items, D] float32, row i for row i of `items` (the FAISS index rows)."""
    (vectors,) = _encode(
        items,
        item_side(features),
        lambda kjt: [model.item_vector(kjt)],
        batch_size,
        device,
        "items",
        progress,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def encode_users(
    model: RetrievalModel,
    features: FeaturesConfig,
    users: pa.Table,
    batch_size: int = 4096,
    device: torch.device = _CPU,
    progress: bool = False,
    beta: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors [n, D] float32, gates [n, 2] (click, conversion)) for the rows of `users`,
    from its user and context columns, at the serving knob `beta` (0 = as trained)."""
    vectors, gates = _encode(
        users,
        user_side(features),
        lambda kjt: [model.query_vector(kjt, beta), model.user_gate(kjt, beta)],
        batch_size,
        device,
        "users",
        progress,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32), gates.astype(np.float32)


def encode_query_parts(
    model: RetrievalModel,
    features: FeaturesConfig,
    users: pa.Table,
    batch_size: int = 4096,
    device: torch.device = _CPU,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(u / tau [n, d], gate logit z [n]) float32 for the rows of `users`: one encoding from
    which `student.compose_query` makes the query at any serving-knob beta."""
    u_tau, z = _encode(
        users,
        user_side(features),
        lambda kjt: list(model.query_parts(kjt)),  # type: ignore[attr-defined]
        batch_size,
        device,
        "users",
        progress,
    )
    return np.ascontiguousarray(u_tau, dtype=np.float32), z.astype(np.float32)


def encode_groups(
    model: RetrievalModel,
    features: FeaturesConfig,
    table: pa.Table,
    groups: tuple[str, ...],
    batch_size: int = 4096,
    device: torch.device = _CPU,
) -> dict[str, np.ndarray]:
    """Pooled embeddings {group: [n, group_dim]} of `table`'s rows from the shared EBC (the
    teacher's input), with the same matched calls across ranks as the vector encoders."""
    specs = [s for g in groups for s in features.group(g)]  # type: ignore[arg-type]
    present = [g for g in groups if features.group(g)]  # type: ignore[arg-type]
    arrays = _encode(
        table,
        specs,
        lambda kjt: [model.sparse.lookup(kjt, tuple(present))[g] for g in present],  # type: ignore[attr-defined]
        batch_size,
        device,
        "/".join(present),
        False,
    )
    return dict(zip(present, arrays, strict=True))
