"""The metric columns of the comparison, in table order, with their headers.

Every model's numbers are flattened into these keys (None where a metric does not apply), so
the table, the targets, the plot and comparison.json agree on one vocabulary; a frontier point
(`KnobPoint`) and a reference ranker's row (`ReferenceRow`) are records over the same columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from dmmp_rec.eval.records import JsonObject, number

K_TABLE = 50  # the K of the single-K columns and of the targets

TEACHER_COLUMNS = ("ctr_auc", "cvr_auc", "ctcvr_auc", "ctr_logloss", "ctcvr_logloss")
RETRIEVAL_COLUMNS = (
    "click_recall@10",
    "click_recall@50",
    "click_recall@100",
    "conversion_recall@50",
    "ndcg@50",
    "bait_share@50",
    "expected_clicks@50",
    "expected_conversions@50",
)
# The teacher as a brute-force full-catalogue retriever (ranking by its pCTCVR) and the
# student's best frontier point on the same users (eval.teacher_retrieval).
TEACHER_RETRIEVAL_COLUMNS = ("teacher_conversions@50", "student_best_conversions@50")
COLUMNS = TEACHER_COLUMNS + RETRIEVAL_COLUMNS + TEACHER_RETRIEVAL_COLUMNS

HEADERS = {
    "ctr_auc": "CTR AUC",
    "cvr_auc": "CVR AUC (clicked)",
    "ctcvr_auc": "CTCVR AUC",
    "ctr_logloss": "CTR logloss",
    "ctcvr_logloss": "CTCVR logloss",
    "click_recall@10": "logged click R@10",
    "click_recall@50": "logged click R@50",
    "click_recall@100": "logged click R@100",
    "conversion_recall@50": "logged conv R@50",
    "ndcg@50": "NDCG@50 (pCTCVR)",
    "bait_share@50": "bait share@50",
    "expected_clicks@50": "exp. clicks@50 / oracle",
    "expected_conversions@50": "exp. conv@50 / oracle",
    "teacher_conversions@50": "teacher as retriever: exp. conv@50",
    "student_best_conversions@50": "student's best frontier point: exp. conv@50",
}
# Logged recall is exposure-biased (the logging policy chose what could be clicked):
# popularity beats every model on it. It stays in the tables; no target uses it.
LOGGED = ("click_recall@10", "click_recall@50", "click_recall@100", "conversion_recall@50")

# metrics whose value must lie in [0, 1]; log losses are only >= 0
UNIT_INTERVAL = tuple(c for c in COLUMNS if not c.endswith("logloss"))


def empty_metrics() -> dict[str, float | None]:
    return dict.fromkeys(COLUMNS)


def finite(x: Any) -> float | None:
    """A finite value as a float, None for a missing or non-finite one."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class KnobPoint:
    """One point of a run's serving-knob frontier at K = 50: the knob value beta, expected
    clicks / conversions over the oracle's, bait share and mean conversion gate there, and the
    platform totals (sums over the sample's users; None in reports from before them)."""

    beta: float
    clicks: float | None
    conversions: float | None
    bait: float | None
    gate: float | None
    clicks_total: float | None = None
    conversions_total: float | None = None

    def to_dict(self) -> JsonObject:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> KnobPoint:
        """The point of a comparison.json frontier entry (beta "inf"/"-inf" as infinities)."""
        return cls(
            number(raw["beta"]),
            raw["clicks"],
            raw["conversions"],
            raw["bait"],
            raw["gate"],
            raw.get("clicks_total"),
            raw.get("conversions_total"),
        )


@dataclass
class ReferenceRow:
    """A reference ranker's row of the table: its label and its columns."""

    label: str
    metrics: dict[str, float | None]

    def to_dict(self) -> JsonObject:
        return {"label": self.label, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> ReferenceRow:
        return cls(raw["label"], dict(raw["metrics"]))
