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
from typing import cast

import numpy as np
import pyarrow as pa
import torch

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.catalogue import (
    Catalogue,
    Interactions,
    load_catalogue,
    split_interactions,
    split_users,
    train_click_counts,
)
from dmmp_rec.data.pair_features import pair_features_for
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.distributed.collectives import on_main, rank_and_world, share_bounds
from dmmp_rec.errors import InputError
from dmmp_rec.eval.frontier import DEFAULT_BETAS, frontier_report, ranker_name
from dmmp_rec.eval.oracle_gate import (
    drop_rankers,
    flat_gate_logit,
    flat_ranker_name,
    oracle_gate_report,
)
from dmmp_rec.eval.oracle_metrics import (
    ORACLE_RANKERS,
    oracle_metrics,
    recalls,
    summarise,
)
from dmmp_rec.eval.samples import TEST_SPLIT, oracle_sample
from dmmp_rec.eval.teacher_retrieval import PairCross, teacher_subset, teacher_top_k
from dmmp_rec.inference.catalogue_vectors import (
    RetrievalModel,
    encode_groups,
    encode_items,
    encode_query_parts,
    encode_users,
)
from dmmp_rec.inference.item_index import search_top_k
from dmmp_rec.model.student import compose_query, shifted_gate

TEACHER_SCOPE = "teacher_sample"  # the users the teacher also ranks the catalogue for


@dataclass
class RetrievalOptions:
    ks: list[int] = field(default_factory=lambda: [10, 50, 100])
    oracle_users: int = 2000  # seeded sample of users for the ground-truth metrics
    split: str = "test"
    batch_size: int = 4096  # rows per encoding call
    seed: int = 0  # of the oracle samples (eval.samples: validation never meets test users)
    # The serving knob's grid for the frontier of three-tower models (eval.frontier); empty: none
    betas: list[float] = field(default_factory=lambda: list(DEFAULT_BETAS))
    # Users of the sample for whom the teacher ranks the whole catalogue (0: skip; slow:
    # a teacher forward per user x item pair)
    teacher_users: int = 0

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"K values must be >= 1, got {self.ks}")
        if self.batch_size < 1:
            raise ValueError(f"encoding batch size must be >= 1, got {self.batch_size}")
        if self.teacher_users < 0:
            raise ValueError(f"teacher users must be >= 0, got {self.teacher_users}")
        if self.oracle_users < 0:
            raise ValueError(f"oracle users must be >= 0, got {self.oracle_users}")
        if any(math.isnan(b) for b in self.betas):
            raise ValueError(f"betas must be numbers (+-inf allowed), got {self.betas}")


def _check_truth(truth: GroundTruth, cat: Catalogue, users: np.ndarray) -> None:
    if cat.item_ids.size and cat.item_ids.max() >= truth.num_items:
        raise InputError(
            f"the ground truth knows {truth.num_items} items but the catalogue has item id "
            f"{int(cat.item_ids.max())}: was the world regenerated with other sizes?"
        )
    if users.size and users.max() >= truth.num_users:
        raise InputError(
            f"the ground truth knows {truth.num_users} users but the split has user id "
            f"{int(users.max())}: was the world regenerated with other sizes?"
        )


def _user_rows(cat: Catalogue, inter: Interactions, split: str) -> pa.Table:
    """The catalogue row of every user of the split, in `inter.users` order."""
    order = np.argsort(cat.user_ids, kind="stable")
    pos = np.searchsorted(cat.user_ids[order], inter.users)
    pos = np.minimum(pos, len(order) - 1)
    missing = inter.users[cat.user_ids[order][pos] != inter.users]
    if missing.size:
        raise InputError(
            f"{cat.source}: no row for user id {int(missing[0])} of the {split} split "
            f"({missing.size} users missing)"
        )
    return cat.users.take(pa.array(order[pos]))


def _has_knob(model: RetrievalModel, u_tau: np.ndarray) -> bool:
    """A gated query ([g_c u, g_v u] / tau) is twice the tower width; a two-tower's is not."""
    width = cast(int, getattr(model, "vector_dim", u_tau.shape[1]))
    return int(width) == 2 * u_tau.shape[1]


def _compose(u_tau: np.ndarray, z: np.ndarray, beta: float) -> np.ndarray:
    q = compose_query(torch.from_numpy(u_tau), torch.from_numpy(z), beta)
    return np.ascontiguousarray(q.numpy(), dtype=np.float32)


def _flat_rankers(
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
        rankers[flat_ranker_name(j)] = search_top_k(item_vecs, _compose(u_tau, flat, beta), kmax)
    return [flat_ranker_name(j) for j in range(len(betas))]


def _gate_mean(z: np.ndarray, beta: float) -> float:
    return float(shifted_gate(torch.from_numpy(z), beta)[:, 1].double().mean())


def _teacher_section(
    summary: dict[str, dict], model_summary: dict[str, dict], betas: list[float], users: int
) -> dict[str, object]:
    """The teacher ranking the whole catalogue vs the student on the same users: the student
    as trained (beta 0) and its best frontier point for expected conversions, per K."""
    student = model_summary.pop(TEACHER_SCOPE)
    candidates = [(0.0, student)] + [
        (b, summary[ranker_name(j)].pop(TEACHER_SCOPE)) for j, b in enumerate(betas)
    ]
    best: dict[str, float] = {}
    best_beta: dict[str, float] = {}
    for k in student["exp_conversions_ratio"]:
        beta, scope = max(candidates, key=lambda c: _nan_low(c[1]["exp_conversions_ratio"][k]))
        best[k], best_beta[k] = scope["exp_conversions_ratio"][k], beta
    for name in ORACLE_RANKERS:
        summary[name].pop(TEACHER_SCOPE, None)
    return {
        "users": users,
        "teacher": summary.pop("teacher")[TEACHER_SCOPE],
        "student": student,
        "student_best": best,
        "student_best_beta": best_beta,
    }


def _nan_low(x: float) -> float:
    return -math.inf if x is None or math.isnan(x) else x


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
        raise InputError(f"K = {kmax} exceeds the {len(cat.item_ids)} items of the catalogue")
    inter = split_interactions(cfg, options.split)
    user_rows = _user_rows(cat, inter, options.split)
    show = progress and rank == 0
    item_vecs = encode_items(model, cfg.features, cat.items, options.batch_size, device, show)
    u_tau = z = None
    if hasattr(model, "query_parts"):
        u_tau, z = encode_query_parts(
            model, cfg.features, user_rows, options.batch_size, device, show
        )
    if u_tau is not None and z is not None and _has_knob(model, u_tau):
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
        **recalls("model/all_users", model_rows, users, cat, inter, ks),
        **recalls("popularity/all_users", popular_rows, users, cat, inter, ks),
    }
    sample_size = teacher_size = 0
    flat_names: list[str] = []  # the knob's grid on a flat gate (eval.oracle_gate)
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
            assert u_tau is not None and z is not None  # betas need the query parts
            q = _compose(u_tau[lo:hi][mine], z[lo:hi][mine], beta)
            rankers[ranker_name(j)] = search_top_k(item_vecs, q, kmax)
        if betas:
            assert u_tau is not None and z is not None
            per_user["sample_users"] = users[mine]  # for the bound's hidden-trait readings
            flat_names = _flat_rankers(rankers, item_vecs, u_tau[lo:hi][mine], z, betas, kmax)
        per_user.update(oracle_metrics(users[mine], rankers, cat, inter, truth, ks, show))
        if options.teacher_users > 0 and hasattr(model, "dense"):
            subset = teacher_subset(sample, options.teacher_users, options.seed)
            teacher_size = len(subset)
            local = users[mine]
            on_rank = np.isin(local, subset)
            emb_u = encode_groups(
                model,
                cfg.features,
                user_rows.take(pa.array(np.searchsorted(inter.users, subset))),
                ("user", "context"),
                options.batch_size,
                device,
            )
            emb_i = encode_groups(
                model, cfg.features, cat.items, ("item",), options.batch_size, device
            )
            mask = np.isin(subset, local)
            cross_of = None
            if cfg.features.group("cross"):
                source = pair_features_for(cfg)
                if source is None:
                    raise InputError(
                        "the teacher reads cross features, and this data cannot compute them "
                        "for unlogged pairs: teacher retrieval needs a world with catalogues"
                    )
                cross_of = PairCross(model, cfg.features, source, cat.item_ids, device)
            t_rows = teacher_top_k(
                model,
                {g: a[mask] for g, a in emb_u.items()},
                emb_i,
                kmax,
                device,
                subset[mask],
                cross_of,
            )
            t_rankers = {
                name: rows[on_rank]
                for name, rows in rankers.items()
                if name != "popularity" and not name.startswith("flat")
            }
            t_rankers["teacher"] = t_rows
            per_user.update(
                oracle_metrics(
                    local[on_rank], t_rankers, cat, inter, truth, ks, show, TEACHER_SCOPE
                )
            )

    def summarise_with_gate(rows: dict[str, np.ndarray]) -> tuple[dict, object]:
        """Summary and oracle-gate bound from every rank's rows, computed on rank 0 alone."""
        gate_bound = None
        if betas and sample_size:
            assert z is not None and truth is not None
            learned = [ranker_name(j) for j in range(len(betas))]
            who = rows.pop("sample_users")
            traits = {"propensity": truth.propensity[who], "purchase_rho": truth.purchase_rho[who]}
            gate_bound = oracle_gate_report(
                rows, learned, flat_names, betas, ks, flat_gate_logit(z), traits=traits
            )
            drop_rankers(rows, [n for n in flat_names if n not in learned])
        return summarise(rows, ks), gate_bound

    summary, gate_bound = on_main(per_user, summarise_with_gate)  # rank 0 computes, sends round
    n_click, n_conv = inter.counts(inter.users)
    model_summary = summary.pop("model")
    teacher = None
    if teacher_size:
        teacher = _teacher_section(summary, model_summary, betas, teacher_size)
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
    if teacher is not None:
        report["teacher_retrieval"] = teacher
    if betas and sample_size:
        assert z is not None  # betas need the query parts
        gate_means = [_gate_mean(z, b) for b in betas]
        report["frontier"] = frontier_report(summary, betas, ks, gate_means)
    if gate_bound is not None:
        report["oracle_gate"] = gate_bound
    report["references"] = summary
    return report
