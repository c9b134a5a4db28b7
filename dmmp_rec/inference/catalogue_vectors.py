"""Query and item vectors of the student, from catalogue tables (items.parquet, users.parquet).

Here, below train/eval/serving, because evaluation and export both encode the catalogue.

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
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.console.progress import track
from dmmp_rec.data.catalogue import item_side, user_side
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.distributed.collectives import gather_shares, rank_and_world, share_bounds

_CPU = torch.device("cpu")


class RetrievalModel(Protocol):
    """What encoding needs: a DMMPModel, or `dmp.module` of a DistributedModelParallel."""

    def query_vector(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """Query vectors of users.

        Args:
            features: a KJT of the user and context features.
            beta: the serving knob (0 = as trained).

        Returns:
            [B, D] query vectors.
        """
        ...

    def item_vector(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """Item vectors.

        Args:
            features: a KJT of the item features.

        Returns:
            [B, D] item vectors.
        """
        ...

    def user_gate(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """Per-user (click, conversion) preferences.

        Args:
            features: a KJT of the user features.
            beta: the serving knob (0 = as trained).

        Returns:
            [B, 2] gate weights.
        """
        ...


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
        gather_shares(torch.cat([o[j] for o in outputs]), n, world_size).cpu().numpy()
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
    """Item vectors of a catalogue, row i for row i of `items` (the FAISS index rows).

    Args:
        model: a DMMPModel, or `dmp.module` of a DistributedModelParallel (every rank calls).
        features: the job's features (which columns belong to which side).
        items: the item catalogue's feature columns (items.parquet rows).
        batch_size: rows per EBC call.
        device: where the model runs.
        progress: show a progress bar (rank 0).

    Returns:
        [num_items, D] float32 item vectors, on every rank.
    """
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
    """Query vectors and gates of users, from their user and context columns.

    Args:
        model: a DMMPModel, or `dmp.module` of a DistributedModelParallel (every rank calls).
        features: the job's features (which columns belong to which side).
        users: the user catalogue's feature columns (users.parquet rows).
        batch_size: rows per EBC call.
        device: where the model runs.
        progress: show a progress bar (rank 0).
        beta: the serving knob (0 = as trained).

    Returns:
        (query vectors [n, D] float32, gates [n, 2] (click, conversion) float32), on every rank.
    """
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
    """The parts of every user's query: one encoding for a whole grid of beta.

    `student.compose_query(u / tau, z, beta)` makes the query at any serving-knob beta.

    Args:
        model: a DMMPModel, or `dmp.module` of a DistributedModelParallel (every rank calls).
        features: the job's features (which columns belong to which side).
        users: the user catalogue's feature columns.
        batch_size: rows per EBC call.
        device: where the model runs.
        progress: show a progress bar (rank 0).

    Returns:
        (u / tau [n, d], gate logit z [n]) float32, on every rank.
    """
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
    """Pooled embeddings of a table's rows from the shared EBC (the teacher's input).

    The calls are matched across ranks as in the vector encoders.

    Args:
        model: a DMMPModel, or `dmp.module` of a DistributedModelParallel (every rank calls).
        features: the job's features (which columns belong to which side).
        table: feature columns of the rows to encode.
        groups: the feature groups to pool ("user", "item", "context", "cross").
        batch_size: rows per EBC call.
        device: where the model runs.

    Returns:
        {group: [n, group_dim]} for each group of `groups` that has features.
    """
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
