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
from functools import partial

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
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.distributed.collectives import on_main, rank_and_world, share_bounds
from dmmp_rec.errors import InputError
from dmmp_rec.eval.frontier import DEFAULT_BETAS, frontier_report, ranker_name
from dmmp_rec.eval.gate_records import OracleGateBound
from dmmp_rec.eval.oracle_gate import (
    drop_rankers,
    flat_gate_logit,
    oracle_gate_report,
)
from dmmp_rec.eval.oracle_metrics import oracle_metrics, recalls, summarise
from dmmp_rec.eval.queries import Queries, compose, encode_queries, flat_rankers, gate_mean
from dmmp_rec.eval.records import PerUser, RankerScores, RetrievalSummary
from dmmp_rec.eval.report_types import RetrievalReport
from dmmp_rec.eval.samples import TEST_SPLIT, oracle_sample
from dmmp_rec.eval.teacher_retrieval import teacher_subset
from dmmp_rec.eval.teacher_section import TeacherUsers, teacher_per_user, teacher_section
from dmmp_rec.inference.catalogue_vectors import RetrievalModel, encode_items
from dmmp_rec.inference.item_index import search_top_k


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


@dataclass
class _SplitData:
    """The split being evaluated: its catalogue, logged interactions, every user's row (in
    `inter.users` order) and the sorted Ks."""

    cat: Catalogue
    inter: Interactions
    user_rows: pa.Table
    ks: list[int]


@dataclass
class _Measured:
    """This rank's per-user values and what the summary needs to know of them."""

    per_user: PerUser
    sample_size: int = 0  # users of the ground-truth sample (all ranks)
    teacher_size: int = 0  # users the teacher ranked the catalogue for (all ranks)
    flat_names: list[str] = field(default_factory=list)  # the knob's grid on a flat gate


def _load_split(cfg: DmmpConfig, options: RetrievalOptions) -> _SplitData:
    ks = sorted(set(options.ks))
    cat = load_catalogue(cfg, options.split)
    if max(ks) > len(cat.item_ids):
        raise InputError(f"K = {max(ks)} exceeds the {len(cat.item_ids)} items of the catalogue")
    inter = split_interactions(cfg, options.split)
    return _SplitData(cat, inter, _user_rows(cat, inter, options.split), ks)


@dataclass
class _RankShare:
    """This rank's contiguous share [lo, hi) of the split's users and its rankers' rows for
    them (the model's, popularity's)."""

    lo: int
    hi: int
    users: np.ndarray
    rankers: dict[str, np.ndarray]


def _sample_rankers(
    item_vecs: np.ndarray,
    q: Queries,
    share: _RankShare,
    in_sample: np.ndarray,
    betas: list[float],
    kmax: int,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The rows of the sample users `in_sample` (indices into the share) of every ranker:
    the share's, then the knob's grid on the learned gate and on a flat gate (three-tower
    models); with the flat grid's ranker names."""
    rows = {name: r[in_sample] for name, r in share.rankers.items()}
    if not betas:
        return rows, []
    assert q.u_tau is not None and q.z is not None  # betas need the query parts
    u_tau = q.u_tau[share.lo : share.hi][in_sample]
    z = q.z[share.lo : share.hi][in_sample]
    for j, beta in enumerate(betas):
        rows[ranker_name(j)] = search_top_k(item_vecs, compose(u_tau, z, beta), kmax)
    # the flat gate sits at the median of every user's learned gate logit
    return rows, flat_rankers(rows, item_vecs, u_tau, q.z, betas, kmax)


def _oracle_sample(cfg: DmmpConfig, inter: Interactions, options: RetrievalOptions) -> np.ndarray:
    test_users = inter.users if options.split == TEST_SPLIT else split_users(cfg, TEST_SPLIT)
    return oracle_sample(options.split, inter.users, test_users, options.oracle_users, options.seed)


def _measure_sample(
    model: RetrievalModel,
    cfg: DmmpConfig,
    data: _SplitData,
    truth: GroundTruth,
    share: _RankShare,
    search: tuple[np.ndarray, Queries, list[float]],
    options: RetrievalOptions,
    env: tuple[torch.device, bool],
) -> _Measured:
    """Ground-truth metrics of this rank's users of the oracle sample; `search`: the item
    vectors, the queries and the knob's grid; `env`: the device and whether to show progress.
    Returns the sample's per-user values (without the all-users recalls)."""
    item_vecs, q, betas = search
    device, show = env
    _check_truth(truth, data.cat, data.inter.users)
    sample = _oracle_sample(cfg, data.inter, options)
    in_sample = np.flatnonzero(np.isin(share.users, sample))
    rankers, flat_names = _sample_rankers(item_vecs, q, share, in_sample, betas, max(data.ks))
    out = _Measured(PerUser(), len(sample), flat_names=flat_names)
    local = share.users[in_sample]
    if betas:  # the world's hidden traits of these users, for the oracle-gate bound
        out.per_user.sample_users = local
    out.per_user.values.update(
        oracle_metrics(local, rankers, data.cat, data.inter, truth, data.ks, show)
    )
    if options.teacher_users > 0 and hasattr(model, "dense"):
        who = TeacherUsers(teacher_subset(sample, options.teacher_users, options.seed), local)
        out.teacher_size = len(who.subset)
        split = (data.cat, data.inter, data.user_rows, truth)
        args = (data.ks, options.batch_size, device, show)
        out.per_user.values.update(teacher_per_user(model, cfg, split, who, rankers, *args))
    return out


@dataclass
class _GateInputs:
    """What the oracle-gate bound needs besides the gathered rows (eval.oracle_gate)."""

    betas: list[float]
    flat_names: list[str]
    flat_z: float  # the flat gate's shared logit
    truth: GroundTruth


def _summarise_with_gate(
    arrays: dict[str, np.ndarray], ks: list[int], gate: _GateInputs | None
) -> tuple[dict[str, RankerScores], OracleGateBound | None]:
    """Summary and oracle-gate bound (when `gate`) from every rank's rows, computed on rank 0
    alone."""
    per_user = PerUser.from_arrays(arrays)
    bound = None
    if gate is not None:
        learned = [ranker_name(j) for j in range(len(gate.betas))]
        who = per_user.sample_users
        assert who is not None  # recorded with the grid
        traits = {
            "propensity": gate.truth.propensity[who],
            "purchase_rho": gate.truth.purchase_rho[who],
        }
        bound = oracle_gate_report(
            per_user.values, learned, gate.flat_names, gate.betas, ks, gate.flat_z, traits=traits
        )
        drop_rankers(per_user.values, [n for n in gate.flat_names if n not in learned])
    return summarise(per_user.values, ks), bound


def _betas(options: RetrievalOptions, q: Queries) -> list[float]:
    """The knob's grid for a model with one (the query parts), else none."""
    return list(options.betas) if q.z is not None else []


def _rank_share(data: _SplitData, cfg: DmmpConfig, item_vecs: np.ndarray, q: Queries) -> _RankShare:
    """This rank's users, searched by the model, and the popularity ranker's rows for them."""
    rank, world_size = rank_and_world()
    lo, hi = share_bounds(len(data.inter.users), rank, world_size)
    users = data.inter.users[lo:hi]
    kmax = max(data.ks)
    model_rows = search_top_k(item_vecs, q.queries[lo:hi], kmax)
    n_items = len(data.cat.item_ids)
    popular = np.lexsort((np.arange(n_items), -train_click_counts(cfg, data.cat.item_ids)))
    popular_rows = np.broadcast_to(popular[:kmax], (len(users), kmax))
    return _RankShare(lo, hi, users, {"model": model_rows, "popularity": popular_rows})


def _summary_section(
    data: _SplitData,
    options: RetrievalOptions,
    measured: _Measured,
    q: Queries,
    dim: int,
    model: RankerScores,
) -> RetrievalSummary:
    """The "retrieval" section: the split, the index, the sample and the model's scores."""
    n_click, n_conv = data.inter.counts(data.inter.users)
    return RetrievalSummary(
        k=data.ks,
        split=options.split,
        catalogue=data.cat.source,
        items=int(len(data.cat.item_ids)),
        users=int(len(data.inter.users)),
        users_with_clicks=int((n_click > 0).sum()),
        users_with_conversions=int((n_conv > 0).sum()),
        oracle_sample_users=measured.sample_size,
        oracle_sample_seed=options.seed,
        mean_gate=[float(x) for x in q.gates.mean(axis=0)],
        index=f"faiss IndexFlatIP (exact), dim {dim}",
        model=model,
    )


def evaluate_retrieval(
    model: RetrievalModel,
    cfg: DmmpConfig,
    truth: GroundTruth | None,
    options: RetrievalOptions,
    device: torch.device | None = None,
    progress: bool = True,
) -> RetrievalReport:
    """Retrieval metrics of the model, of its serving-knob frontier (three-tower models) and of
    the reference rankers; the same report on every rank.

    Args:
        model: a DMMPModel, `dmp.module` or any RetrievalModel (every rank must call this
            together).
        cfg: the config whose data is evaluated.
        truth: the synthetic world's ground truth, None for data without one.
        options: split, Ks, sample sizes and the knob's grid.
        device: where the model runs (CPU when None).
        progress: show progress bars (rank 0 only).

    Returns:
        The retrieval sections of the report as records."""
    options.validate()
    device = device if device is not None else torch.device("cpu")
    show = progress and rank_and_world()[0] == 0
    data = _load_split(cfg, options)
    item_vecs = encode_items(model, cfg.features, data.cat.items, options.batch_size, device, show)
    q = encode_queries(model, cfg, data.user_rows, options.batch_size, device, show)
    betas = _betas(options, q)
    share = _rank_share(data, cfg, item_vecs, q)
    measured = _Measured(PerUser())
    if truth is not None and options.oracle_users > 0:
        search = (item_vecs, q, betas)
        measured = _measure_sample(model, cfg, data, truth, share, search, options, (device, show))
    recall = {}
    for name in ("model", "popularity"):
        rows = share.rankers[name]
        recall.update(recalls(name, "all_users", rows, share.users, data.cat, data.inter, data.ks))
    measured.per_user.values = {**recall, **measured.per_user.values}
    gate = None
    if betas and measured.sample_size:
        assert q.z is not None and truth is not None
        gate = _GateInputs(betas, measured.flat_names, flat_gate_logit(q.z), truth)
    # rank 0 computes, sends round
    compute = partial(_summarise_with_gate, ks=data.ks, gate=gate)
    summary, gate_bound = on_main(measured.per_user.to_arrays(), compute)
    return _assemble(data, options, measured, q, summary, gate_bound, item_vecs.shape[1])


def _assemble(
    data: _SplitData,
    options: RetrievalOptions,
    measured: _Measured,
    q: Queries,
    summary: dict[str, RankerScores],
    gate_bound: OracleGateBound | None,
    dim: int,
) -> RetrievalReport:
    """The report's records from rank 0's summary (the model's scores, the teacher section and
    the frontier popped out of it; what remains are the references)."""
    model = summary.pop("model")
    betas = _betas(options, q)
    teacher = None
    if measured.teacher_size:
        teacher = teacher_section(summary, model, betas, measured.teacher_size)
    section = _summary_section(data, options, measured, q, dim, model)
    report = RetrievalReport(section, summary, teacher)
    if betas and measured.sample_size:
        assert q.z is not None  # betas need the query parts
        gate_means = [gate_mean(q.z, b) for b in betas]
        report.frontier = frontier_report(summary, betas, data.ks, gate_means)
    report.oracle_gate = gate_bound
    return report
