"""The teacher as a full-catalogue retriever inside the retrieval evaluation: its rankings (and
the student's, on the same users) as per-user metrics, then the report's "teacher_retrieval"
section (eval.teacher_retrieval computes the teacher's top K)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.catalogue import Catalogue, Interactions
from dmmp_rec.data.pair_features import pair_features_for
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.errors import InputError
from dmmp_rec.eval.frontier import ranker_name
from dmmp_rec.eval.oracle_metrics import ORACLE_RANKERS, oracle_metrics
from dmmp_rec.eval.records import MetricKey, RankerScores, TeacherRetrieval
from dmmp_rec.eval.teacher_retrieval import PairCross, teacher_top_k
from dmmp_rec.inference.catalogue_vectors import RetrievalModel, encode_groups

TEACHER_SCOPE = "teacher_sample"  # the users the teacher also ranks the catalogue for


@dataclass
class TeacherUsers:
    """Who the teacher ranks the catalogue for: `subset` (every rank's, sorted) and this rank's
    sample users `local`, whose rankers' rows are aligned with them."""

    subset: np.ndarray
    local: np.ndarray


def _cross_of(
    model: RetrievalModel, cfg: DmmpConfig, cat: Catalogue, device: torch.device
) -> PairCross | None:
    """The teacher's cross input per user, None when the teacher reads no cross feature."""
    if not cfg.features.group("cross"):
        return None
    source = pair_features_for(cfg)
    if source is None:
        raise InputError(
            "the teacher reads cross features, and this data cannot compute them "
            "for unlogged pairs: teacher retrieval needs a world with catalogues"
        )
    return PairCross(model, cfg.features, source, cat.item_ids, device)


def teacher_per_user(
    model: RetrievalModel,
    cfg: DmmpConfig,
    data: tuple[Catalogue, Interactions, pa.Table, GroundTruth],
    who: TeacherUsers,
    rankers: dict[str, np.ndarray],
    ks: list[int],
    batch_size: int,
    device: torch.device,
    show: bool,
) -> dict[MetricKey, np.ndarray]:
    """Per-user metrics on TEACHER_SCOPE of the teacher ranking the catalogue and of the
    student's `rankers` (those of the sample: no popularity, no flat gate) for this rank's
    users of `who.subset`; `data`: catalogue, interactions, users' rows, ground truth."""
    cat, inter, user_rows, truth = data
    kmax = max(ks)
    on_rank = np.isin(who.local, who.subset)
    subset_rows = user_rows.take(pa.array(np.searchsorted(inter.users, who.subset)))
    groups = ("user", "context")
    emb_u = encode_groups(model, cfg.features, subset_rows, groups, batch_size, device)
    emb_i = encode_groups(model, cfg.features, cat.items, ("item",), batch_size, device)
    mask = np.isin(who.subset, who.local)
    t_rows = teacher_top_k(
        model,
        {g: a[mask] for g, a in emb_u.items()},
        emb_i,
        kmax,
        device,
        who.subset[mask],
        _cross_of(model, cfg, cat, device),
    )
    t_rankers = {
        name: rows[on_rank]
        for name, rows in rankers.items()
        if name != "popularity" and not name.startswith("flat")
    }
    t_rankers["teacher"] = t_rows
    local = who.local[on_rank]
    return oracle_metrics(local, t_rankers, cat, inter, truth, ks, show, TEACHER_SCOPE)


def teacher_section(
    summary: dict[str, RankerScores], model: RankerScores, betas: list[float], users: int
) -> TeacherRetrieval:
    """The teacher ranking the whole catalogue vs the student on the same users: the student
    as trained (beta 0) and its best frontier point for expected conversions, per K. Pops the
    TEACHER_SCOPE scores out of `summary` and `model`."""
    student = model.scopes.pop(TEACHER_SCOPE)
    candidates = [(0.0, student)] + [
        (b, summary[ranker_name(j)].scopes.pop(TEACHER_SCOPE)) for j, b in enumerate(betas)
    ]
    best: dict[int, float] = {}
    best_beta: dict[int, float] = {}
    for k in student.metrics["exp_conversions_ratio"]:
        beta, scope = max(
            candidates, key=lambda c: _nan_low(c[1].metrics["exp_conversions_ratio"][k])
        )
        best[k], best_beta[k] = scope.metrics["exp_conversions_ratio"][k], beta
    for name in ORACLE_RANKERS:
        summary[name].scopes.pop(TEACHER_SCOPE, None)
    teacher = summary.pop("teacher").scopes[TEACHER_SCOPE]
    return TeacherRetrieval(users, teacher, student, best, best_beta)


def _nan_low(x: float | None) -> float:
    return -math.inf if x is None or math.isnan(x) else x
