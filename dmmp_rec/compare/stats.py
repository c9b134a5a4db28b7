"""Seeds -> means with 95% confidence intervals, and paired per-seed comparisons.

Every model of a comparison trains at the same N seeds on one fixed world, so model A's run at
seed s and model B's run at seed s share the data order and the evaluation sample: their
difference is paired. A target "A >= r x B" passes when the median of the per-seed ratios A/B
meets r AND the 95% t-interval of the per-seed differences A - B excludes zero on A's side
(DESIGN.md, "Evaluation protocol"). With 3 seeds the interval is wide (t = 4.30): a pass means
the effect is large next to the run-to-run spread, not merely present at one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Two-sided 95% quantiles of Student's t by degrees of freedom; 1.96 beyond the table.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
}  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (table, conservative)."""
    if df < 1:
        return math.nan
    keys = [k for k in _T975 if k <= df]
    return _T975[max(keys)] if df <= 60 else 1.96


@dataclass(frozen=True)
class Interval:
    """Mean of the finite values and its 95% t-interval; lo = hi = NaN with fewer than 2."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def interval(values: Sequence[float | None]) -> Interval:
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size))


@dataclass(frozen=True)
class Paired:
    """A vs B over the seeds where both were measured."""

    seeds: list[int]
    a: list[float]
    b: list[float]
    ratios: list[float]  # a / b per seed
    median_ratio: float
    difference: Interval  # of a - b

    def to_dict(self) -> dict:
        d = asdict(self)
        d["difference"] = self.difference.to_dict()
        return d


def paired(seeds: Sequence[int], a: Sequence[float | None], b: Sequence[float | None]) -> Paired:
    """Per-seed ratios and differences of aligned sequences; a seed missing either is left out."""
    keep = [
        (s, float(x), float(y))
        for s, x, y in zip(seeds, a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    ss = [s for s, _, _ in keep]
    xs = [x for _, x, _ in keep]
    ys = [y for _, _, y in keep]
    ratios = [x / y if y != 0 else math.nan for x, y in zip(xs, ys, strict=True)]
    finite = [r for r in ratios if math.isfinite(r)]
    median = float(np.median(finite)) if finite else math.nan
    diffs = [x - y for x, y in zip(xs, ys, strict=True)]
    return Paired(ss, xs, ys, ratios, median, interval(diffs))


def passes(p: Paired, ratio: float, higher_is_better: bool = True) -> bool | None:
    """The verdict: the median ratio meets `ratio` (>= it, or <= it when lower is better) and
    the difference's interval excludes zero on the good side. None with fewer than 2 seeds."""
    if p.difference.n < 2 or not math.isfinite(p.median_ratio):
        return None
    if higher_is_better:
        return p.median_ratio >= ratio and p.difference.lo > 0
    return p.median_ratio <= ratio and p.difference.hi < 0
