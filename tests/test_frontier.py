"""Reading a click/conversion frontier: the best conversions at a click level, its range and
its area, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmmp_rec.eval.frontier import best_at_clicks, click_range, curve, mean_best_conversions
from dmmp_rec.eval.records import Frontier

# (clicks, conversions, bait) in beta order: clicks fall, conversions rise, then fall again
POINTS = np.array(
    [
        [0.60, 0.10, 0.50],
        [0.50, 0.20, 0.40],
        [0.40, 0.25, 0.30],
        [0.20, 0.24, 0.20],
    ]
)


def test_best_at_clicks_interpolates_between_grid_points() -> None:
    # 0.55 lies halfway between the first two points
    assert best_at_clicks(POINTS, 0.55) == pytest.approx((0.15, 0.45))
    # at 0.45 the segment (0.5, 0.2) -> (0.4, 0.25) gives 0.225
    assert best_at_clicks(POINTS, 0.45) == pytest.approx((0.225, 0.35))
    # "at least 0.3 clicks": the point (0.4, 0.25) beats the crossing at 0.3 (0.245)
    assert best_at_clicks(POINTS, 0.30) == pytest.approx((0.25, 0.30))
    # below every point: the best point of all
    assert best_at_clicks(POINTS, 0.10) == pytest.approx((0.25, 0.30))
    # more clicks than the frontier ever reaches
    assert best_at_clicks(POINTS, 0.61) is None
    # a NaN point (no sample user) is left out
    with_nan = np.vstack([POINTS, [math.nan, 0.9, 0.0]])
    assert best_at_clicks(with_nan, 0.10) == pytest.approx((0.25, 0.30))


def test_range_and_mean_over_a_click_range() -> None:
    assert click_range(POINTS) == (0.2, 0.6)
    # over [0.4, 0.6] the best conversions fall linearly 0.25 -> 0.2 -> 0.1 at 0.4/0.5/0.6
    # (from 0.4 to 0.5: max(segment, 0.25 point) = 0.25 exactly at 0.4 only)
    grid = np.linspace(0.4, 0.6, 2001)
    hand = [best_at_clicks(POINTS, c)[0] for c in grid]
    want = np.trapezoid(hand, grid) / 0.2
    assert mean_best_conversions(POINTS, 0.4, 0.6) == pytest.approx(want, rel=1e-3)
    # a range beyond the frontier has no area
    assert math.isnan(mean_best_conversions(POINTS, 0.4, 0.7))
    assert math.isnan(mean_best_conversions(POINTS, 0.5, 0.5))


def test_curve_reads_a_report_frontier_at_k() -> None:
    frontier = {
        "k": [10, 50],
        "points": [
            {
                "beta": "-inf",
                "mean_gate_conversion": 0.2,
                "exp_clicks_ratio": {"10": 0.5, "50": 0.6},
                "exp_conversions_ratio": {"10": 0.1, "50": 0.2},
                "bait_share": {"10": 0.3, "50": None},
            }
        ],
    }
    record = Frontier.from_dict(frontier)
    np.testing.assert_allclose(curve(record, 50), [[0.6, 0.2, math.nan]])
    np.testing.assert_allclose(curve(record, 10), [[0.5, 0.1, 0.3]])
    assert record.points[0].beta == -math.inf
