"""Classification metrics in plain numpy (no torchmetrics state to synchronise).

AUC is the Mann-Whitney statistic with average ranks for ties, which equals scikit-learn's
roc_auc_score; it returns NaN when a class is absent instead of raising, because a small
validation shard can lack conversions.

A leaf module, like `console`: training's validation and evaluation both compute these, and
neither layer may import the other (tests/test_layering.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average rank within each run of tied scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    labels = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    if labels.size == 0:
        return float("nan")
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean predicted probability over observed rate (1.0 is calibrated)."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    observed = labels.mean() if labels.size else float("nan")
    if not observed:
        return float("nan")
    return float(np.mean(probs) / observed)


@dataclass
class ImpressionAucs:
    """The AUCs of one set of scored impressions, computed once for training's validation
    (its `val/*` keys) and for evaluation (the report's teacher and student sections): the
    teacher's CTR over all rows, CVR over clicked rows (ESMM), CTCVR over all rows, and the
    student's scores where the model has them (None where not)."""

    rows: int
    teacher_ctr: float
    teacher_cvr: float
    teacher_ctcvr: float
    student_ctr: float | None = None  # s_c against clicks
    student_ctcvr: float | None = None  # s_v against conversions
    fused_ctcvr: float | None = None  # the fused score against conversions
    fused_ctr: float | None = None  # the fused score against clicks


def impression_aucs(scores: dict[str, np.ndarray]) -> ImpressionAucs:
    """`ImpressionAucs` of scored rows: "click", "conversion", "pctr", "pcvr", "pctcvr" and,
    for a student, any of "s_c", "s_v", "fused" (inference.split_scores.score_rows)."""
    click, conv = scores["click"], scores["conversion"]
    clicked = click > 0
    fused = scores.get("fused")
    return ImpressionAucs(
        rows=int(click.size),
        teacher_ctr=auc(click, scores["pctr"]),
        teacher_cvr=auc(conv[clicked], scores["pcvr"][clicked]),
        teacher_ctcvr=auc(conv, scores["pctcvr"]),
        student_ctr=auc(click, scores["s_c"]) if "s_c" in scores else None,
        student_ctcvr=auc(conv, scores["s_v"]) if "s_v" in scores else None,
        fused_ctcvr=auc(conv, fused) if fused is not None else None,
        fused_ctr=auc(click, fused) if fused is not None else None,
    )
