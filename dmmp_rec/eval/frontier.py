"""The click/conversion frontier of a three-tower student, traced by the serving knob beta.

`g' = softmax(gate_logits + [0, beta])` moves every user's candidates between the click tower
(beta = -inf) and the conversion tower (beta = +inf) without retraining (dmmp_rec.model.student).
Evaluated over a grid of beta, a model is a curve of (expected clicks@K, expected
conversions@K, bait share@K) points, each over the oracle's; a two-tower is one point. "Model A
beats B" then means more expected conversions at the same expected clicks (DESIGN.md,
"Evaluation protocol"), read off the curves here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dmmp_rec.eval.records import Frontier, FrontierPoint, RankerScores, ScopeScores

# The serving knob's grid: both single-tower ends, and enough points around the trained gate
# (beta = 0) that linear interpolation between neighbours is close to the curve.
DEFAULT_BETAS: tuple[float, ...] = (
    -math.inf, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, math.inf,
)  # fmt: skip
CLICKS, CONVERSIONS, BAIT = "exp_clicks_ratio", "exp_conversions_ratio", "bait_share"
CLICKS_TOTAL, CONVERSIONS_TOTAL = "exp_clicks_total", "exp_conversions_total"
POINT_METRICS = (CLICKS, CONVERSIONS, BAIT, "ndcg_pctcvr", CLICKS_TOTAL, CONVERSIONS_TOTAL)


def ranker_name(j: int) -> str:
    """The reference-ranker name of the j-th beta of the grid while metrics are computed."""
    return f"beta{j}"


def frontier_report(
    summary: dict[str, RankerScores], betas: Sequence[float], ks: list[int], gate_means: list[float]
) -> Frontier:
    """Pop the grid's rankers out of a retrieval summary into the frontier record; each
    point holds beta, the mean conversion gate at that beta and every POINT_METRICS by K."""
    points = []
    for j, beta in enumerate(betas):
        sample = summary.pop(ranker_name(j)).scopes["sample"]
        scores = ScopeScores({m: sample.metrics[m] for m in POINT_METRICS})
        points.append(FrontierPoint(float(beta), gate_means[j], scores))
    return Frontier(ks, points)


def curve(frontier: Frontier, k: int = 50) -> np.ndarray:
    """[n, 3] (clicks, conversions, bait share) at K = k, one row per beta, in beta order."""
    rows = [[_num(p.scores.at(m, k)) for m in (CLICKS, CONVERSIONS, BAIT)] for p in frontier.points]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def best_at_clicks(points: np.ndarray, clicks: float) -> tuple[float, float] | None:
    """The most expected conversions a piecewise-linear frontier reaches with expected clicks
    >= `clicks`, and the bait share there; None when no point of it has that many clicks.

    `points` is [n, 3] (clicks, conversions, bait) in beta order; segments between neighbours
    are linear (the knob moves continuously between grid points)."""
    pts = points[np.isfinite(points).all(axis=1)]
    best: tuple[float, float] | None = None
    for c, v, b in pts:
        if c >= clicks and (best is None or v > best[0]):
            best = (float(v), float(b))
    for (c0, v0, b0), (c1, v1, b1) in zip(pts[:-1], pts[1:], strict=True):
        lo, hi = min(c0, c1), max(c0, c1)
        if lo <= clicks <= hi and hi > lo:
            t = (clicks - c0) / (c1 - c0)
            v, b = v0 + t * (v1 - v0), b0 + t * (b1 - b0)
            if best is None or v > best[0]:
                best = (float(v), float(b))
    return best


def click_range(points: np.ndarray) -> tuple[float, float]:
    """(fewest, most) expected clicks over a frontier's finite points."""
    c = points[np.isfinite(points).all(axis=1), 0]
    return (float(c.min()), float(c.max())) if c.size else (math.nan, math.nan)


def mean_best_conversions(points: np.ndarray, lo: float, hi: float, steps: int = 101) -> float:
    """The frontier's area over clicks in [lo, hi] divided by the range's width: the average
    of `best_at_clicks` over the range (NaN if the frontier does not span it)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return math.nan
    values = [best_at_clicks(points, c) for c in np.linspace(lo, hi, steps)]
    best = [v[0] for v in values if v is not None]
    if len(best) < len(values):
        return math.nan
    return float(np.trapezoid(best, dx=1.0 / (steps - 1)))
