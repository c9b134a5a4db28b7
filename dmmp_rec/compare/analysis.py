"""What the comparison reads off its runs: per-seed values, frontier readings at the two-tower's
clicks, the frontier's area, and the serving knob's operating point chosen on validation.

Everything here is a pure function of the comparison's runs (compare.records.Comparison, also
read back from a comparison.json), so the report can be re-derived (and tested) without training
anything. A run's split holds `metrics` (the table columns) and, for three-tower models,
`frontier`: KnobPoints at K = 50, in beta order. A model without a frontier (the two-tower,
the DSSM peer) is the single point of its metrics.
"""

from __future__ import annotations

import math

import numpy as np

from dmmp_rec.compare.findings import READING_KEYS, KnobReading, OperatingPoint, Readings
from dmmp_rec.compare.records import Comparison, RunRecord, SplitColumns
from dmmp_rec.compare.stats import Interval, interval
from dmmp_rec.eval.frontier import best_at_clicks, click_range, mean_best_conversions

REFERENCE = "two_tower"  # the point every frontier is read at
CLICK_SHARE = 0.9  # "at >= 0.9x the two-tower's expected clicks"
CLICKS, CONVERSIONS, BAIT = "expected_clicks@50", "expected_conversions@50", "bait_share@50"


def value(result: Comparison, model: str, split: str, key: str, seed: int) -> float | None:
    run = result.run(model, seed)
    return None if run is None else run.metric(split, key)


def values(result: Comparison, model: str, split: str, key: str) -> list[float | None]:
    """One value per seed of the comparison (None where missing), in seed order."""
    return [value(result, model, split, key, s) for s in result.seeds]


def summary(
    result: Comparison, split: str, columns: tuple[str, ...]
) -> dict[str, dict[str, Interval]]:
    """{model: {column: Interval}} over the seeds."""
    return {
        name: {c: interval(values(result, name, split, c)) for c in columns}
        for name in result.models
    }


def curve(run_split: SplitColumns) -> np.ndarray:
    """[n, 3] (clicks, conversions, bait) of a run's frontier, or its single point."""
    points = run_split.frontier
    if points:
        rows = [[_f(p.clicks), _f(p.conversions), _f(p.bait)] for p in points]
        return np.array(rows, dtype=np.float64)
    m = run_split.metrics
    return np.array([[_f(m.get(CLICKS)), _f(m.get(CONVERSIONS)), _f(m.get(BAIT))]])


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


def has_frontier(result: Comparison, model: str) -> bool:
    entry = result.models.get(model)
    runs = [] if entry is None else entry.runs
    return any(split.frontier for run in runs for split in run.splits.values())


def _curves(result: Comparison, models: list[str], split: str, seed: int) -> dict[str, np.ndarray]:
    """The frontier (or single point) of each model's run at `seed` on `split`, where it has one."""
    runs = {m: result.run(m, seed) for m in models}
    return {
        m: curve(r.splits[split]) for m, r in runs.items() if r is not None and split in r.splits
    }


def frontier_readings(
    result: Comparison, split: str, reference: str = REFERENCE, share: float = CLICK_SHARE
) -> dict[str, Readings]:
    """Per model with retrieval, per seed (seed order): the best expected conversions at the
    reference's expected clicks (`conv_at_ref`) and at `share` of them (`conv_at_share`), the
    bait share there (`bait_at_share`), and the mean best conversions over the click range
    every frontier model of that seed spans (`area`; NaN for single points)."""
    models = [m for m in result.models if value_any(result, m, split, CONVERSIONS)]
    frontier_models = [m for m in models if has_frontier(result, m)]
    out = {name: Readings() for name in models}
    for seed in result.seeds:
        ref_clicks = value(result, reference, split, CLICKS, seed)
        curves = _curves(result, models, split, seed)
        ranges = [click_range(curves[m]) for m in frontier_models if m in curves]
        lo = max((r[0] for r in ranges), default=math.nan)
        hi = min((r[1] for r in ranges), default=math.nan)
        for name in models:
            c = curves.get(name)
            row = out[name]
            if c is None:
                for key in READING_KEYS:
                    row.get(key).append(None)
                continue
            # without the reference (a comparison of three-tower models only) the area remains
            at_ref = None if ref_clicks is None else best_at_clicks(c, ref_clicks)
            at_share = None if ref_clicks is None else best_at_clicks(c, share * ref_clicks)
            row.conv_at_ref.append(None if at_ref is None else at_ref[0])
            row.conv_at_share.append(None if at_share is None else at_share[0])
            row.bait_at_share.append(None if at_share is None else at_share[1])
            area = mean_best_conversions(c, lo, hi) if name in frontier_models else math.nan
            row.area.append(area if math.isfinite(area) else None)
    return out


def value_any(result: Comparison, model: str, split: str, key: str) -> bool:
    return any(v is not None for v in values(result, model, split, key))


def _operating_point(
    run: RunRecord, ref: float, share: float, choose_on: str, read_on: str
) -> OperatingPoint | None:
    """The grid point of `run` chosen on `choose_on` (most conversions with clicks >= `share` x
    `ref`) and read on `read_on`; None where no point qualifies or the grids differ."""
    chosen = run.splits[choose_on].frontier or []
    read = run.splits[read_on].frontier or []
    ok = [(j, p) for j, p in enumerate(chosen) if p.clicks is not None and p.clicks >= share * ref]
    if not ok or len(read) != len(chosen):
        return None
    j, p = max(ok, key=lambda jp: _f(jp[1].conversions))
    q = read[j]
    return OperatingPoint(
        float(p.beta),
        KnobReading(p.clicks, p.conversions, p.bait),
        KnobReading(q.clicks, q.conversions, q.bait),
    )


def operating_points(
    result: Comparison,
    model: str,
    reference: str = REFERENCE,
    share: float = CLICK_SHARE,
    choose_on: str = "val",
    read_on: str = "test",
) -> list[OperatingPoint | None]:
    """Per seed: the grid beta with the most validation conversions among those keeping
    validation clicks >= `share` x the reference's, and the test point at that beta (what a
    deployment would see: the knob is set on validation, the test day is only read)."""
    out: list[OperatingPoint | None] = []
    for seed in result.seeds:
        run = result.run(model, seed)
        ref = value(result, reference, choose_on, CLICKS, seed)
        if run is None or ref is None or not all(s in run.splits for s in (choose_on, read_on)):
            out.append(None)
            continue
        out.append(_operating_point(run, ref, share, choose_on, read_on))
    return out
