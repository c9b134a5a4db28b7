"""Paired-seed statistics of the comparison against hand computations."""

from __future__ import annotations

import math

import pytest

from dmmp_rec.compare.stats import interval, paired, passes, t975


def test_interval_is_the_t_interval_by_hand() -> None:
    iv = interval([0.20, 0.23, 0.26])
    # mean 0.23, sd 0.03, se 0.03 / sqrt(3), t(2) = 4.303
    half = 4.303 * 0.03 / math.sqrt(3)
    assert (iv.mean, iv.lo, iv.hi, iv.n) == pytest.approx((0.23, 0.23 - half, 0.23 + half, 3))
    assert interval([None, 0.5, float("nan")]).n == 1
    one = interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo)
    assert interval([]).n == 0
    assert t975(2) == 4.303 and t975(22) == 2.086 and t975(500) == 1.96


def test_paired_ratios_medians_and_verdicts_by_hand() -> None:
    seeds = [7, 8, 9]
    a = [0.23, 0.20, 0.25]
    b = [0.20, 0.18, 0.21]
    p = paired(seeds, a, b)
    assert p.ratios == pytest.approx([1.15, 0.20 / 0.18, 0.25 / 0.21])
    assert p.median_ratio == pytest.approx(1.15)
    diffs = [0.03, 0.02, 0.04]  # mean 0.03, sd 0.01
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (p.difference.mean, p.difference.lo) == pytest.approx((0.03, 0.03 - half))
    assert p.difference.lo > 0
    assert passes(p, 1.15) is True
    assert passes(p, 1.16) is False  # the median misses
    noisy = paired(seeds, [0.30, 0.15, 0.25], b)  # median 1.19 but diffs 0.10, -0.03, 0.04
    assert noisy.median_ratio > 1.15 and noisy.difference.lo < 0
    assert passes(noisy, 1.15) is False  # the interval includes no change
    # lower is better (bait share): median ratio <= 0.6 and the difference's interval below 0
    bait = paired(seeds, [0.30, 0.28, 0.33], [0.55, 0.50, 0.52])
    assert passes(bait, 0.6, higher_is_better=False) is True
    # a seed missing one side is left out; one seed is not enough for a verdict
    gap = paired(seeds, [0.2, None, None], b)
    assert gap.seeds == [7] and passes(gap, 1.0) is None
    assert diffs == pytest.approx([x - y for x, y in zip(a, b, strict=True)])
