"""Evaluation report (dmmp_rec.eval.report) -> the comparison's metric columns.

Recall of clicks and conversions is over all test users with such an item (scope
`all_users`); NDCG, bait share and expected conversions need the ground truth and come from the
report's seeded user sample (scope `sample`). Reference rankers scored on the sample only
(the oracles) take their recalls from the sample too. A report is parsed once into its records
(`EvalReport.from_dict`); these functions read their fields.
"""

from __future__ import annotations

from dmmp_rec.compare.columns import KnobPoint, ReferenceRow, empty_metrics, finite
from dmmp_rec.eval.gate_records import OracleGateBound
from dmmp_rec.eval.records import RankerScores
from dmmp_rec.eval.report_types import TASKS, EvalReport, ImpressionMetrics

LABELS = {
    "popularity": "popularity (train clicks)",
    "oracle_pctr": "oracle top-K by true pCTR",
    "oracle_pctcvr": "oracle top-K by true pCTCVR",
}


# a finite value, None for a missing or non-finite one (NaN: no user had the event)
_value = finite


def _retrieval(scores: RankerScores, out: dict[str, float | None]) -> None:
    recall_scope = "all_users" if "all_users" in scores.scopes else "sample"
    for k in (10, 50, 100):
        out[f"click_recall@{k}"] = _value(scores.at(recall_scope, "recall_click", k))
    out["conversion_recall@50"] = _value(scores.at(recall_scope, "recall_conversion", 50))
    out["ndcg@50"] = _value(scores.at("sample", "ndcg_pctcvr", 50))
    out["bait_share@50"] = _value(scores.at("sample", "bait_share", 50))
    out["expected_clicks@50"] = _value(scores.at("sample", "exp_clicks_ratio", 50))
    out["expected_conversions@50"] = _value(scores.at("sample", "exp_conversions_ratio", 50))


def _probabilities(section: ImpressionMetrics, out: dict[str, float | None]) -> None:
    for task in TASKS:
        out[f"{task}_auc"] = _value(section.task(task).auc)
    out["ctr_logloss"] = _value(section.ctr.log_loss)
    out["ctcvr_logloss"] = _value(section.ctcvr.log_loss)


def model_metrics(report: EvalReport) -> dict[str, float | None]:
    """The columns of one model: teacher columns if it has a `teacher` section, retrieval
    columns if it has a `retrieval` section; None elsewhere."""
    out = empty_metrics()
    if report.teacher is not None:
        _probabilities(report.teacher, out)
    if report.retrieval is not None:
        _retrieval(report.retrieval.retrieval.model, out)
        tr = report.retrieval.teacher_retrieval
        if tr is not None:
            out["teacher_conversions@50"] = _value(tr.teacher.at("exp_conversions_ratio", 50))
            out["student_best_conversions@50"] = _value(tr.student_best.get(50))
    return out


def frontier_points(report: EvalReport, k: int = 50) -> list[KnobPoint] | None:
    """The serving knob's frontier at K = k (expected clicks / conversions over the oracle's,
    bait share, mean conversion gate), or None for a model without one."""
    frontier = report.retrieval.frontier if report.retrieval is not None else None
    if frontier is None:
        return None
    return [
        KnobPoint(
            beta=p.beta,
            clicks=_value(p.scores.at("exp_clicks_ratio", k)),
            conversions=_value(p.scores.at("exp_conversions_ratio", k)),
            bait=_value(p.scores.at("bait_share", k)),
            gate=_value(p.mean_gate_conversion),
            # platform totals (sums over the sample's users); absent from older reports
            clicks_total=_value(p.scores.at("exp_clicks_total", k)),
            conversions_total=_value(p.scores.at("exp_conversions_total", k)),
        )
        for p in frontier.points
    ]


def oracle_gate(report: EvalReport) -> OracleGateBound | None:
    """The oracle-gate bound of a three-tower run (eval.oracle_gate), or None."""
    return report.retrieval.oracle_gate if report.retrieval is not None else None


def bayes_metrics(report: EvalReport) -> dict[str, float | None]:
    """The Bayes ceiling row (true probabilities as scores on the same test rows)."""
    out = empty_metrics()
    if report.bayes is not None:
        _probabilities(report.bayes, out)
    return out


def reference_rows(report: EvalReport) -> dict[str, ReferenceRow]:
    """Reference rankers (popularity, oracle pCTR, oracle pCTCVR) as labelled rows."""
    rows = {}
    references = report.retrieval.references if report.retrieval is not None else {}
    for name, scores in references.items():
        metrics = empty_metrics()
        _retrieval(scores, metrics)
        rows[name] = ReferenceRow(LABELS.get(name, name), metrics)
    return rows
