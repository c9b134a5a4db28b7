"""The metric columns of the comparison, in table order, with their headers.

Every model's numbers are flattened into these keys (None where a metric does not apply), so
the table, the targets, the plot and comparison.json agree on one vocabulary.
"""

from __future__ import annotations

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
