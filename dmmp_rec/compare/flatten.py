"""Evaluation report (dmmp_rec.eval.report) -> the comparison's metric columns.

Recall of clicks and conversions is over all test users with such an item (scope
`all_users`); NDCG, bait share and expected conversions need the ground truth and come from the
report's seeded user sample (scope `sample`). Reference rankers scored on the sample only
(the oracles) take their recalls from the sample too.
"""

from __future__ import annotations

import math
from typing import Any

from dmmp_rec.compare.columns import empty_metrics

LABELS = {
    "popularity": "popularity (train clicks)",
    "oracle_pctr": "oracle top-K by true pCTR",
    "oracle_pctcvr": "oracle top-K by true pCTCVR",
}


def _value(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _at(scopes: dict, scope: str, metric: str, k: int) -> float | None:
    return _value(scopes.get(scope, {}).get(metric, {}).get(str(k)))


def _retrieval(scopes: dict, out: dict[str, float | None]) -> None:
    recall_scope = "all_users" if "all_users" in scopes else "sample"
    for k in (10, 50, 100):
        out[f"click_recall@{k}"] = _at(scopes, recall_scope, "recall_click", k)
    out["conversion_recall@50"] = _at(scopes, recall_scope, "recall_conversion", 50)
    out["ndcg@50"] = _at(scopes, "sample", "ndcg_pctcvr", 50)
    out["bait_share@50"] = _at(scopes, "sample", "bait_share", 50)
    out["expected_clicks@50"] = _at(scopes, "sample", "exp_clicks_ratio", 50)
    out["expected_conversions@50"] = _at(scopes, "sample", "exp_conversions_ratio", 50)


def _probabilities(section: dict, out: dict[str, float | None]) -> None:
    for task in ("ctr", "cvr", "ctcvr"):
        out[f"{task}_auc"] = _value(section[task]["auc"])
    out["ctr_logloss"] = _value(section["ctr"]["log_loss"])
    out["ctcvr_logloss"] = _value(section["ctcvr"]["log_loss"])


def model_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """The columns of one model: teacher columns if it has a `teacher` section, retrieval
    columns if it has a `retrieval` section; None elsewhere."""
    out = empty_metrics()
    if "teacher" in report:
        _probabilities(report["teacher"], out)
    if "retrieval" in report:
        _retrieval(report["retrieval"], out)
    tr = report.get("teacher_retrieval")
    if tr:
        out["teacher_conversions@50"] = _value(tr["teacher"]["exp_conversions_ratio"].get("50"))
        out["student_best_conversions@50"] = _value(tr["student_best"].get("50"))
    return out


def frontier_points(report: dict[str, Any], k: int = 50) -> list[dict[str, Any]] | None:
    """The serving knob's frontier at K = k as {beta, clicks, conversions, bait, gate} points
    (expected clicks / conversions over the oracle's), or None for a model without one."""
    frontier = report.get("frontier")
    if not frontier:
        return None
    return [
        {
            "beta": float(p["beta"]),
            "clicks": _value(p["exp_clicks_ratio"].get(str(k))),
            "conversions": _value(p["exp_conversions_ratio"].get(str(k))),
            "bait": _value(p["bait_share"].get(str(k))),
            "gate": _value(p["mean_gate_conversion"]),
            # platform totals (sums over the sample's users); absent from older reports
            "clicks_total": _value(p.get("exp_clicks_total", {}).get(str(k))),
            "conversions_total": _value(p.get("exp_conversions_total", {}).get(str(k))),
        }
        for p in frontier["points"]
    ]


def oracle_gate(report: dict[str, Any]) -> dict[str, Any] | None:
    """The oracle-gate bound of a three-tower run (eval.oracle_gate), or None."""
    return report.get("oracle_gate")


def bayes_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """The Bayes ceiling row (true probabilities as scores on the same test rows)."""
    out = empty_metrics()
    if "bayes" in report:
        _probabilities(report["bayes"], out)
    return out


def reference_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Reference rankers (popularity, oracle pCTR, oracle pCTCVR) as labelled rows."""
    rows = {}
    for name, scopes in report.get("references", {}).items():
        metrics = empty_metrics()
        _retrieval(scopes, metrics)
        rows[name] = {"label": LABELS.get(name, name), "metrics": metrics}
    return rows
