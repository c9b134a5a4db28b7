"""Impression-level metrics of the teacher (and the student's scores) on a labelled split, with
the Bayes ceilings of the synthetic world beside them.

Conventions (ESMM): CTR and CTCVR are scored over all impressions, CVR over clicked impressions
only. The rows are scored by `inference.split_scores.score_rows` on every rank and gathered in rank
order, which is the split's file order, so the numbers do not depend on the world size.
"""

from __future__ import annotations

import numpy as np

from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.metrics import ImpressionAucs, calibration, impression_aucs, log_loss


def _rate_metrics(labels: np.ndarray, probs: np.ndarray, auc_value: float) -> dict[str, float]:
    return {
        "auc": auc_value,
        "log_loss": log_loss(labels, probs),
        "predicted_rate": float(np.mean(probs)) if probs.size else float("nan"),
        "observed_rate": float(np.mean(labels)) if labels.size else float("nan"),
        "calibration": calibration(labels, probs),
    }


def probability_metrics(
    click: np.ndarray,
    conversion: np.ndarray,
    pctr: np.ndarray,
    pcvr: np.ndarray,
    pctcvr: np.ndarray,
    aucs: ImpressionAucs | None = None,
) -> dict[str, dict[str, float]]:
    """AUC, log loss and calibration of CTR (all rows), CVR (clicked rows), CTCVR (all rows);
    `aucs`: these rows' `metrics.impression_aucs` when already computed."""
    if aucs is None:
        probs = {"pctr": pctr, "pcvr": pcvr, "pctcvr": pctcvr}
        aucs = impression_aucs({"click": click, "conversion": conversion, **probs})
    clicked = click > 0
    return {
        "ctr": _rate_metrics(click, pctr, aucs.teacher_ctr),
        "cvr": _rate_metrics(conversion[clicked], pcvr[clicked], aucs.teacher_cvr),
        "ctcvr": _rate_metrics(conversion, pctcvr, aucs.teacher_ctcvr),
    }


def teacher_metrics(
    rows: dict[str, np.ndarray], aucs: ImpressionAucs | None = None
) -> dict[str, object]:
    """The teacher's probabilities against the labels, with the row counts they rest on;
    `aucs`: the rows' `metrics.impression_aucs` when already computed."""
    click, conv = rows["click"], rows["conversion"]
    aucs = aucs if aucs is not None else impression_aucs(rows)
    out: dict[str, object] = dict(
        probability_metrics(click, conv, rows["pctr"], rows["pcvr"], rows["pctcvr"], aucs)
    )
    out["rows"] = int(click.size)
    out["clicks"] = int(click.sum())
    out["conversions"] = int(conv.sum())
    return out


def student_metrics(
    rows: dict[str, np.ndarray], aucs: ImpressionAucs | None = None
) -> dict[str, float]:
    """AUCs of the student's impression scores: s_c for clicks, s_v and the fused score for
    conversions (all rows), and the fused score for clicks (the keys of the scores it has)."""
    aucs = aucs if aucs is not None else impression_aucs(rows)
    named = (
        ("s_c_ctr_auc", aucs.student_ctr),
        ("s_v_ctcvr_auc", aucs.student_ctcvr),
        ("fused_ctcvr_auc", aucs.fused_ctcvr),
        ("fused_ctr_auc", aucs.fused_ctr),
    )
    return {key: value for key, value in named if value is not None}


def bayes_metrics(rows: dict[str, np.ndarray], truth: GroundTruth) -> dict[str, object]:
    """The same metrics with the true probabilities as scores: the best any model can reach on
    these rows (up to sampling noise)."""
    u, i = rows["user_id"], rows["item_id"]
    hours = rows.get("hour")
    pctr = truth.pctr(u, i, hours)
    pcvr = truth.pcvr(u, i)
    out: dict[str, object] = dict(
        probability_metrics(rows["click"], rows["conversion"], pctr, pcvr, pctr * pcvr)
    )
    out["hour"] = "per row" if hours is not None else f"fixed {truth.eval_hour}"
    return out
