"""Full-corpus retrieval of the student for every user of a split, through an exact FAISS index.

Any split can be evaluated: choices are made on the validation day, whose ground-truth sample
never shares a user with the test day's (eval.samples). Three-tower models are also evaluated
over the serving knob's beta grid, a frontier of (expected clicks, expected conversions, bait
share) points (eval.frontier).

Relevant items of a user are the items they clicked (or converted on) in the split; Recall@K is
averaged over users with at least one relevant item. On the synthetic world the ground truth
also scores a seeded sample of those users against every item, for NDCG@K with the true pCTCVR
as gains, the click-bait share of the top K, and expected conversions (clicks)@K over the
oracle's. Reference rankers needing no model frame the numbers: popularity (train clicks),
oracle pCTR and oracle pCTCVR. Every rank searches and scores a contiguous share of the users;
the per-user values are gathered in user order and averaged once, so one process and several
give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.catalogue import (
    Catalogue,
    Interactions,
    load_catalogue,
    split_interactions,
    split_users,
    train_click_counts,
)
from dmmp_rec.data.world import GroundTruth
from dmmp_rec.eval import ranking
from dmmp_rec.eval.frontier import DEFAULT_BETAS, frontier_report, ranker_name
from dmmp_rec.eval.samples import TEST_SPLIT, oracle_sample
from dmmp_rec.eval.teacher_eval import gather_rows
from dmmp_rec.eval.vectors import (
    RetrievalModel,
    encode_items,
    encode_query_parts,
    encode_users,
    rank_and_world,
    share_bounds,
)
from dmmp_rec.model.student import compose_query, shifted_gate

_ORACLE_BLOCK = 64  # users scored against the whole corpus at once
ORACLE_RANKERS = ("oracle_pctr", "oracle_pctcvr")
SAMPLE_METRICS = (
    "recall_click",
    "recall_conversion",
    "ndcg_pctcvr",
    "bait_share",
    "exp_conversions_ratio",
    "exp_clicks_ratio",
)


@dataclass
class RetrievalOptions:
    ks: list[int] = field(default_factory=lambda: [10, 50, 100])
    oracle_users: int = 2000  # seeded sample of users for the ground-truth metrics
    split: str = "test"
    batch_size: int = 4096  # rows per encoding call
    seed: int = 0  # of the oracle samples (eval.samples: validation never meets test users)
    # The serving knob's grid for the frontier of three-tower models (eval.frontier); empty: none
    betas: list[float] = field(default_factory=lambda: list(DEFAULT_BETAS))

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"K values must be >= 1, got {self.ks}")
        if self.batch_size < 1:
            raise ValueError(f"encoding batch size must be >= 1, got {self.batch_size}")
        if self.oracle_users < 0:
            raise ValueError(f"oracle users must be >= 0, got {self.oracle_users}")
        if any(math.isnan(b) for b in self.betas):
            raise ValueError(f"betas must be numbers (+-inf allowed), got {self.betas}")


def search_top_k(item_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows [n, k] of the k items of highest inner product per query (exact, IndexFlatIP)."""
    import faiss

    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(np.ascontiguousarray(item_vectors, dtype=np.float32))
    if len(queries) == 0:
        return np.empty((0, k), dtype=np.int64)
    _, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows.astype(np.int64)


def _recalls(
    prefix: str,
    rows: np.ndarray,
    users: np.ndarray,
    cat: Catalogue,
    inter: Interactions,
    ks: list[int],
) -> dict[str, np.ndarray]:
    item_ids = cat.item_ids[rows]
    n_click, n_conv = inter.counts(users)
    hit_c = ranking.hits(item_ids, users, inter.click_users, inter.click_items)
    hit_v = ranking.hits(item_ids, users, inter.conv_users, inter.conv_items)
    return {
        f"{prefix}/recall_click": ranking.recall_at(hit_c, n_click, ks),
        f"{prefix}/recall_conversion": ranking.recall_at(hit_v, n_conv, ks),
    }


def _oracle_block(
    users: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
) -> dict[str, np.ndarray]:
    """Per-user ground-truth metrics of every ranker for one block of users."""
    kmax = max(ks)
    ctr, ctcvr = truth.score_matrix(users, cat.item_ids)
    rankers = {
        **rankers,
        "oracle_pctr": ranking.top_k(ctr, kmax),
        "oracle_pctcvr": ranking.top_k(ctcvr, kmax),
    }
    best_ctcvr = np.take_along_axis(ctcvr, rankers["oracle_pctcvr"], axis=1)
    best_ctr = np.take_along_axis(ctr, rankers["oracle_pctr"], axis=1)
    bait = truth.is_bait[cat.item_ids]
    out = {}
    for name, rows in rankers.items():
        got_ctcvr = np.take_along_axis(ctcvr, rows, axis=1)
        got_ctr = np.take_along_axis(ctr, rows, axis=1)
        out.update(_recalls(f"{name}/sample", rows, users, cat, inter, ks))
        out[f"{name}/sample/ndcg_pctcvr"] = ranking.ndcg_at(got_ctcvr, best_ctcvr, ks)
        out[f"{name}/sample/bait_share"] = ranking.mean_at(bait[rows], ks)
        out[f"{name}/sample/exp_conversions_ratio"] = ranking.sum_ratio_at(
            got_ctcvr, best_ctcvr, ks
        )
        out[f"{name}/sample/exp_clicks_ratio"] = ranking.sum_ratio_at(got_ctr, best_ctr, ks)
    return out


def _oracle_metrics(
    users: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
    show: bool,
) -> dict[str, np.ndarray]:
    """Per-user ground-truth metrics of the sample `users` (this rank's; `rankers` hold their
    rows, aligned), in blocks; every key is present (with no rows) even when this rank has no
    sample user, so the gather lines up."""
    parts: dict[str, list[np.ndarray]] = {
        f"{name}/sample/{metric}": [np.empty((0, len(ks)))]
        for name in (*rankers, *ORACLE_RANKERS)
        for metric in SAMPLE_METRICS
    }
    blocks = range(0, len(users), _ORACLE_BLOCK)
    if show:
        blocks = tqdm(blocks, desc="oracle scoring", unit="block")
    for s in blocks:
        b = slice(s, s + _ORACLE_BLOCK)
        block_rankers = {name: rows[b] for name, rows in rankers.items()}
        for key, v in _oracle_block(users[b], block_rankers, cat, inter, truth, ks).items():
            parts[key].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _check_truth(truth: GroundTruth, cat: Catalogue, users: np.ndarray) -> None:
    if cat.item_ids.size and cat.item_ids.max() >= truth.num_items:
        raise ValueError(
            f"the ground truth knows {truth.num_items} items but the catalogue has item id "
            f"{int(cat.item_ids.max())}: was the world regenerated with other sizes?"
        )
    if users.size and users.max() >= truth.num_users:
        raise ValueError(
            f"the ground truth knows {truth.num_users} users but the split has user id "
            f"{int(users.max())}: was the world regenerated with other sizes?"
        )


def _summarise(per_user: dict[str, np.ndarray], ks: list[int]) -> dict[str, dict]:
    """{ranker: {scope: {metric: {K: mean}}}} from `ranker/scope/metric` arrays."""
    out: dict[str, dict] = {}
    for key, values in per_user.items():
        ranker, scope, metric = key.split("/")
        means = ranking.user_mean(values)
        out.setdefault(ranker, {}).setdefault(scope, {})[metric] = {
            str(k): m for k, m in zip(ks, means, strict=True)
        }
    return out


def _user_rows(cat: Catalogue, inter: Interactions, split: str) -> pa.Table:
    """The catalogue row of every user of the split, in `inter.users` order."""
    order = np.argsort(cat.user_ids, kind="stable")
    pos = np.searchsorted(cat.user_ids[order], inter.users)
    pos = np.minimum(pos, len(order) - 1)
    missing = inter.users[cat.user_ids[order][pos] != inter.users]
    if missing.size:
        raise ValueError(
            f"{cat.source}: no row for user id {int(missing[0])} of the {split} split "
            f"({missing.size} users missing)"
        )
    return cat.users.take(pa.array(order[pos]))


def _has_knob(model: RetrievalModel, u_tau: np.ndarray) -> bool:
    """A gated query ([g_c u, g_v u] / tau) is twice the tower width; a two-tower's is not."""
    return int(getattr(model, "vector_dim", u_tau.shape[1])) == 2 * u_tau.shape[1]


def _compose(u_tau: np.ndarray, z: np.ndarray, beta: float) -> np.ndarray:
    q = compose_query(torch.from_numpy(u_tau), torch.from_numpy(z), beta)
    return np.ascontiguousarray(q.numpy(), dtype=np.float32)


def _gate_mean(z: np.ndarray, beta: float) -> float:
    return float(shifted_gate(torch.from_numpy(z), beta)[:, 1].double().mean())


def evaluate_retrieval(
    model: RetrievalModel,
    cfg: DmmpConfig,
    truth: GroundTruth | None,
    options: RetrievalOptions,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Retrieval metrics of the model, of its serving-knob frontier (three-tower models) and of
    the reference rankers; the same dict on every rank. `model` is a DMMPModel, `dmp.module` or
    any RetrievalModel (every rank must call this together)."""
    options.validate()
    device = device if device is not None else torch.device("cpu")
    rank, world_size = rank_and_world()
    ks = sorted(set(options.ks))
    cat = load_catalogue(cfg, options.split)
    kmax = max(ks)
    if kmax > len(cat.item_ids):
        raise ValueError(f"K = {kmax} exceeds the {len(cat.item_ids)} items of the catalogue")
    inter = split_interactions(cfg, options.split)
    user_rows = _user_rows(cat, inter, options.split)
    show = progress and rank == 0
    item_vecs = encode_items(model, cfg.features, cat.items, options.batch_size, device, show)
    u_tau = z = None
    if hasattr(model, "query_parts"):
        u_tau, z = encode_query_parts(
            model, cfg.features, user_rows, options.batch_size, device, show
        )
    if u_tau is not None and _has_knob(model, u_tau):
        queries = _compose(u_tau, z, 0.0)
        gates = shifted_gate(torch.from_numpy(z), 0.0).numpy()
    else:
        u_tau = z = None
        queries, gates = encode_users(
            model, cfg.features, user_rows, options.batch_size, device, show
        )
    betas = list(options.betas) if z is not None else []

    lo, hi = share_bounds(len(inter.users), rank, world_size)
    users = inter.users[lo:hi]
    model_rows = search_top_k(item_vecs, queries[lo:hi], kmax)
    popular = np.lexsort((np.arange(len(cat.item_ids)), -train_click_counts(cfg, cat.item_ids)))
    popular_rows = np.broadcast_to(popular[:kmax], (len(users), kmax))
    per_user = {
        **_recalls("model/all_users", model_rows, users, cat, inter, ks),
        **_recalls("popularity/all_users", popular_rows, users, cat, inter, ks),
    }
    sample_size = 0
    if truth is not None and options.oracle_users > 0:
        _check_truth(truth, cat, inter.users)
        test_users = inter.users if options.split == TEST_SPLIT else split_users(cfg, TEST_SPLIT)
        sample = oracle_sample(
            options.split, inter.users, test_users, options.oracle_users, options.seed
        )
        sample_size = len(sample)
        mine = np.flatnonzero(np.isin(users, sample))
        rankers = {"model": model_rows[mine], "popularity": popular_rows[mine]}
        for j, beta in enumerate(betas):
            local = slice(lo, hi)
            q = _compose(u_tau[local][mine], z[local][mine], beta)
            rankers[ranker_name(j)] = search_top_k(item_vecs, q, kmax)
        per_user.update(_oracle_metrics(users[mine], rankers, cat, inter, truth, ks, show))
    gathered = gather_rows(per_user)
    summary = _summarise(gathered, ks)
    n_click, n_conv = inter.counts(inter.users)
    model_summary = summary.pop("model")
    report: dict[str, object] = {
        "retrieval": {
            "k": ks,
            "split": options.split,
            "catalogue": cat.source,
            "items": int(len(cat.item_ids)),
            "users": int(len(inter.users)),
            "users_with_clicks": int((n_click > 0).sum()),
            "users_with_conversions": int((n_conv > 0).sum()),
            "oracle_sample_users": sample_size,
            "oracle_sample_seed": options.seed,
            "mean_gate": [float(x) for x in gates.mean(axis=0)],
            "index": f"faiss IndexFlatIP (exact), dim {item_vecs.shape[1]}",
            **model_summary,
        },
    }
    if betas and sample_size:
        gate_means = [_gate_mean(z, b) for b in betas]
        report["frontier"] = frontier_report(summary, betas, ks, gate_means)
    report["references"] = summary
    return report
