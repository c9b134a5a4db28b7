"""The users' queries of a retrieval evaluation, and the serving knob that recomposes them.

A three-tower student's query is [g_c u, g_v u] / tau: the knob beta shifts every user's gate
(dmmp_rec.model.student), so the query at any beta is composed from the parts `u / tau` and the
gate logits z, which are encoded once. A two-tower's query has no knob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import torch

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.eval.frontier import ranker_name
from dmmp_rec.eval.oracle_gate import flat_gate_logit, flat_ranker_name
from dmmp_rec.inference.catalogue_vectors import RetrievalModel, encode_query_parts, encode_users
from dmmp_rec.inference.item_index import search_top_k
from dmmp_rec.model.student import compose_query, shifted_gate


def has_knob(model: RetrievalModel, u_tau: np.ndarray) -> bool:
    """A gated query ([g_c u, g_v u] / tau) is twice the tower width; a two-tower's is not."""
    width = cast(int, getattr(model, "vector_dim", u_tau.shape[1]))
    return int(width) == 2 * u_tau.shape[1]


def compose(u_tau: np.ndarray, z: np.ndarray, beta: float) -> np.ndarray:
    q = compose_query(torch.from_numpy(u_tau), torch.from_numpy(z), beta)
    return np.ascontiguousarray(q.numpy(), dtype=np.float32)


def flat_rankers(
    rankers: dict[str, np.ndarray],
    item_vecs: np.ndarray,
    u_tau: np.ndarray,
    z: np.ndarray,
    betas: list[float],
    kmax: int,
) -> list[str]:
    """Add the knob's grid on a flat gate (every user at the median gate logit) to `rankers`;
    its names, or the learned grid's when the gate is already flat (no_gate)."""
    if z.size == 0 or float(np.ptp(z)) == 0.0:
        return [ranker_name(j) for j in range(len(betas))]
    flat = np.full(u_tau.shape[0], flat_gate_logit(z), dtype=z.dtype)
    for j, beta in enumerate(betas):
        rankers[flat_ranker_name(j)] = search_top_k(item_vecs, compose(u_tau, flat, beta), kmax)
    return [flat_ranker_name(j) for j in range(len(betas))]


def gate_mean(z: np.ndarray, beta: float) -> float:
    return float(shifted_gate(torch.from_numpy(z), beta)[:, 1].double().mean())


@dataclass
class Queries:
    """Every user's query and gate; for a three-tower model also the parts the serving knob
    recomposes (`u_tau`, gate logits `z`), None otherwise."""

    queries: np.ndarray
    gates: np.ndarray
    u_tau: np.ndarray | None = None
    z: np.ndarray | None = None


def encode_queries(
    model: RetrievalModel,
    cfg: DmmpConfig,
    user_rows: pa.Table,
    batch_size: int,
    device: torch.device,
    show: bool,
) -> Queries:
    """The users' queries as trained (beta 0), with the knob's parts when the model has one."""
    if hasattr(model, "query_parts"):
        u_tau, z = encode_query_parts(model, cfg.features, user_rows, batch_size, device, show)
        if has_knob(model, u_tau):
            gates = shifted_gate(torch.from_numpy(z), 0.0).numpy()
            return Queries(compose(u_tau, z, 0.0), gates, u_tau, z)
    queries, gates = encode_users(model, cfg.features, user_rows, batch_size, device, show)
    return Queries(queries, gates)
