"""Per-user retrieval metrics of rankers against logged relevance and the ground truth.

A ranker is an array [users, K] of catalogue rows. Logged recall uses the split's clicked /
converted pairs (exposure-biased: the logging policy chose what could be clicked). With the
synthetic world's ground truth every ranker is also scored against the true pCTR / pCTCVR of
every catalogue item: NDCG with pCTCVR gains, bait share, expected conversions and expected
clicks over the oracle's (the two oracle rankers are added here), and the same expected clicks and
conversions as counts summed over the users (what a platform earns, where a heavy buyer counts
more than a light one; eval.platform_totals). Values stay per user so that
ranks compute their users' rows and the means are taken once, after the gather.
"""

from __future__ import annotations

import numpy as np

from dmmp_rec.console.progress import track
from dmmp_rec.data.catalogue import Catalogue, Interactions
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.eval import ranking
from dmmp_rec.eval.records import MetricKey, RankerScores, ScopeScores

_ORACLE_BLOCK = 64  # users scored against the whole corpus at once
ORACLE_RANKERS = ("oracle_pctr", "oracle_pctcvr")
SAMPLE_METRICS = (
    "recall_click",
    "recall_conversion",
    "ndcg_pctcvr",
    "bait_share",
    "exp_conversions_ratio",
    "exp_clicks_ratio",
    "exp_conversions_total",
    "exp_clicks_total",
)
# Platform totals: summed over the sample's users, not averaged (eval.platform_totals).
TOTAL_METRICS = ("exp_conversions_total", "exp_clicks_total")


def recalls(
    ranker: str,
    scope: str,
    rows: np.ndarray,
    users: np.ndarray,
    cat: Catalogue,
    inter: Interactions,
    ks: list[int],
) -> dict[MetricKey, np.ndarray]:
    """Per-user logged recall of clicks and of conversions of `ranker`'s rows."""
    item_ids = cat.item_ids[rows]
    n_click, n_conv = inter.counts(users)
    hit_c = ranking.hits(item_ids, users, inter.click_users, inter.click_items)
    hit_v = ranking.hits(item_ids, users, inter.conv_users, inter.conv_items)
    return {
        MetricKey(ranker, scope, "recall_click"): ranking.recall_at(hit_c, n_click, ks),
        MetricKey(ranker, scope, "recall_conversion"): ranking.recall_at(hit_v, n_conv, ks),
    }


def oracle_block(
    users: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
    scope: str = "sample",
) -> dict[MetricKey, np.ndarray]:
    """Per-user ground-truth metrics of every ranker (and the two oracles) for one block of
    users."""
    kmax = max(ks)
    ctr, ctcvr = truth.score_matrix(users, cat.item_ids)
    rankers = {
        **rankers,
        "oracle_pctr": ranking.top_k(ctr, kmax),
        "oracle_pctcvr": ranking.top_k(ctcvr, kmax),
    }
    best_ctcvr = np.take_along_axis(ctcvr, rankers["oracle_pctcvr"], axis=1)
    best_ctr = np.take_along_axis(ctr, rankers["oracle_pctr"], axis=1)
    bait = truth.is_bait[cat.item_ids]
    out = {}
    for name, rows in rankers.items():
        got_ctcvr = np.take_along_axis(ctcvr, rows, axis=1)
        got_ctr = np.take_along_axis(ctr, rows, axis=1)
        out.update(recalls(name, scope, rows, users, cat, inter, ks))
        values = {
            "ndcg_pctcvr": ranking.ndcg_at(got_ctcvr, best_ctcvr, ks),
            "bait_share": ranking.mean_at(bait[rows], ks),
            "exp_conversions_ratio": ranking.sum_ratio_at(got_ctcvr, best_ctcvr, ks),
            "exp_clicks_ratio": ranking.sum_ratio_at(got_ctr, best_ctr, ks),
            "exp_conversions_total": ranking.sum_at(got_ctcvr, ks),
            "exp_clicks_total": ranking.sum_at(got_ctr, ks),
        }
        out.update({MetricKey(name, scope, m): v for m, v in values.items()})
    return out


def oracle_metrics(
    users: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
    show: bool,
    scope: str = "sample",
) -> dict[MetricKey, np.ndarray]:
    """Per-user ground-truth metrics of the sample `users` (this rank's; `rankers` hold their
    rows, aligned), in blocks; every key is present (with no rows) even when this rank has no
    sample user, so the gather lines up."""
    parts: dict[MetricKey, list[np.ndarray]] = {
        MetricKey(name, scope, metric): [np.empty((0, len(ks)))]
        for name in (*rankers, *ORACLE_RANKERS)
        for metric in SAMPLE_METRICS
    }
    blocks = track(range(0, len(users), _ORACLE_BLOCK), "oracle scoring", "block", show)
    for s in blocks:
        b = slice(s, s + _ORACLE_BLOCK)
        block_rankers = {name: rows[b] for name, rows in rankers.items()}
        block = oracle_block(users[b], block_rankers, cat, inter, truth, ks, scope)
        for key, v in block.items():
            parts[key].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def summarise(per_user: dict[MetricKey, np.ndarray], ks: list[int]) -> dict[str, RankerScores]:
    """{ranker: its scores on each scope: {metric: {K: mean}}} from the per-user arrays; the
    TOTAL_METRICS are sums over the users instead of means."""
    out: dict[str, RankerScores] = {}
    for key, values in per_user.items():
        total = key.metric in TOTAL_METRICS
        means = ranking.user_sum(values) if total else ranking.user_mean(values)
        scopes = out.setdefault(key.ranker, RankerScores()).scopes
        scope = scopes.setdefault(key.scope, ScopeScores())
        scope.metrics[key.metric] = dict(zip(ks, means, strict=True))
    return out
