"""Impression-level metrics of the teacher (and the student's scores) on a labelled split, with
the Bayes ceilings of the synthetic world beside them.

Conventions (ESMM): CTR and CTCVR are scored over all impressions, CVR over clicked impressions
only. The rows are scored by `inference.split_scores.score_rows` on every rank and gathered in rank
order, which is the split's file order, so the numbers do not depend on the world size.
"""

from __future__ import annotations

import numpy as np

from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.metrics import auc, calibration, log_loss


def _rate_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(labels, probs),
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
) -> dict[str, dict[str, float]]:
    """AUC, log loss and calibration of CTR (all rows), CVR (clicked rows), CTCVR (all rows)."""
    clicked = click > 0
    return {
        "ctr": _rate_metrics(click, pctr),
        "cvr": _rate_metrics(conversion[clicked], pcvr[clicked]),
        "ctcvr": _rate_metrics(conversion, pctcvr),
    }


def teacher_metrics(rows: dict[str, np.ndarray]) -> dict[str, object]:
    """The teacher's probabilities against the labels, with the row counts they rest on."""
    click, conv = rows["click"], rows["conversion"]
    out: dict[str, object] = dict(
        probability_metrics(click, conv, rows["pctr"], rows["pcvr"], rows["pctcvr"])
    )
    out["rows"] = int(click.size)
    out["clicks"] = int(click.sum())
    out["conversions"] = int(conv.sum())
    return out


def student_metrics(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """AUCs of the student's impression scores: s_c for clicks, s_v and the fused score for
    conversions (all rows), and the fused score for clicks."""
    click, conv = rows["click"], rows["conversion"]
    out = {}
    if "s_c" in rows:
        out["s_c_ctr_auc"] = auc(click, rows["s_c"])
    if "s_v" in rows:
        out["s_v_ctcvr_auc"] = auc(conv, rows["s_v"])
    if "fused" in rows:
        out["fused_ctcvr_auc"] = auc(conv, rows["fused"])
        out["fused_ctr_auc"] = auc(click, rows["fused"])
    return out


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
