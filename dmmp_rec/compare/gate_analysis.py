"""The gate's worth in a comparison (issue 19): platform-total frontiers and the oracle-gate bound.

Platform totals are expected clicks / conversions@50 summed over the sample's users (a heavy
buyer counts more than a light one; the per-user ratios to the oracle average that away). Each
three-tower run's frontier is read on them: the area is the mean best total conversions over the
click range every frontier of the seed spans (as `analysis.frontier_readings` does on the
ratios). The oracle-gate bound (eval.oracle_gate) says, per run, how much each user's own knob
value could gain over one global value (`oracle_gain`), how much the learned gate gained
(`learned_gain`) and their ratio (`captured`), averaged over the exchange rates.

Targets (a learned-gate model against `no_gate`, paired seeds, the project's rule: the median
ratio meets it and the interval of the paired difference excludes no change): the learned gain
is >= 50% of the oracle gain on platform totals, and the platform-total frontier area is above
no-gate's.
"""

from __future__ import annotations

import math

import numpy as np

from dmmp_rec.compare.findings import BoundSummary, GateSection, GateTarget
from dmmp_rec.compare.records import Comparison, SplitColumns
from dmmp_rec.compare.stats import Paired, interval, paired, passes
from dmmp_rec.eval.frontier import click_range, mean_best_conversions
from dmmp_rec.eval.gate_records import OracleGateBound

BASELINE = "no_gate"
CAPTURE_SHARE = 0.5
METRICS = ("platform_total", "per_user_mean")
BOUND_KEYS = ("oracle_gain", "learned_gain", "captured")


def platform_curve(run_split: SplitColumns) -> np.ndarray | None:
    """[n, 3] (total clicks, total conversions, bait) over the knob's grid, or None."""
    points = run_split.frontier
    if not points or points[0].clicks_total is None:
        return None
    rows = [[_f(p.clicks_total), _f(p.conversions_total), _f(p.bait)] for p in points]
    return np.array(rows, dtype=np.float64)


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


def platform_areas(result: Comparison, split: str) -> dict[str, list[float | None]]:
    """Per frontier model, per seed: the platform-total frontier's area over the common range."""
    out: dict[str, list[float | None]] = {}
    for seed in result.seeds:
        curves = {}
        for name in result.models:
            run = result.run(name, seed)
            c = (
                None
                if run is None or split not in run.splits
                else platform_curve(run.splits[split])
            )
            if c is not None:
                curves[name] = c
        ranges = [click_range(c) for c in curves.values()]
        lo = max((r[0] for r in ranges), default=math.nan)
        hi = min((r[1] for r in ranges), default=math.nan)
        for name in result.models:
            area = mean_best_conversions(curves[name], lo, hi) if name in curves else math.nan
            out.setdefault(name, []).append(area if math.isfinite(area) else None)
    return {k: v for k, v in out.items() if any(x is not None for x in v)}


def _bound(result: Comparison, split: str, model: str, seed: int) -> OracleGateBound | None:
    run = result.run(model, seed)
    columns = None if run is None else run.splits.get(split)
    return None if columns is None else columns.oracle_gate


def bound_values(
    result: Comparison, split: str, model: str, metric: str, key: str
) -> list[float | None]:
    """One oracle-gate figure per seed (None where the run has no bound)."""
    out: list[float | None] = []
    for seed in result.seeds:
        bound = _bound(result, split, model, seed)
        v = None if bound is None else getattr(bound.metric(metric), key)
        out.append(None if v is None or not math.isfinite(float(v)) else float(v))
    return out


def trait_means(
    result: Comparison, split: str, model: str, metric: str, field: str
) -> dict[str, float]:
    """Mean over seeds and exchange rates of a per-trait figure of the bound: `field`
    best_beta_correlation (each user's best knob value vs the hidden trait) or trait_gate_gain
    (a gate that knew the trait)."""
    found: dict[str, list[float]] = {}
    entry = result.models.get(model)
    for run in [] if entry is None else entry.runs:
        columns = run.splits.get(split)
        bound = None if columns is None else columns.oracle_gate
        for row in [] if bound is None else bound.metric(metric).rates:
            per_trait: dict[str, float] | None = getattr(row, field)
            for trait, r in (per_trait or {}).items():
                if r is not None and math.isfinite(r):
                    found.setdefault(trait, []).append(float(r))
    return {trait: float(np.mean(rs)) for trait, rs in found.items()}


def _bound_summary(result: Comparison, split: str, name: str, metric: str) -> BoundSummary:
    """One model's bound on one metric: intervals and per-seed values of the gains, and the
    per-trait means."""
    per_seed = {k: bound_values(result, split, name, metric, k) for k in BOUND_KEYS}
    return BoundSummary(
        oracle_gain=interval(per_seed["oracle_gain"]),
        learned_gain=interval(per_seed["learned_gain"]),
        captured=interval(per_seed["captured"]),
        per_seed=per_seed,
        trait_correlation=trait_means(result, split, name, metric, "best_beta_correlation"),
        trait_gate_gain=trait_means(result, split, name, metric, "trait_gate_gain"),
    )


def gate_section(result: Comparison, split: str) -> GateSection:
    """Bound figures (mean and interval over seeds) per model and metric, platform areas, and
    the two targets for every model with a learned gate, against `no_gate`."""
    seeds = result.seeds
    areas = platform_areas(result, split)
    bound: dict[str, dict[str, BoundSummary]] = {}
    targets: list[GateTarget] = []
    for name in result.models:
        if not any(bound_values(result, split, name, "platform_total", "oracle_gain")):
            continue
        bound[name] = {metric: _bound_summary(result, split, name, metric) for metric in METRICS}
        if name == BASELINE:
            continue
        got = bound_values(result, split, name, "platform_total", "learned_gain")
        half = [
            None if g is None else CAPTURE_SHARE * g
            for g in bound_values(result, split, name, "platform_total", "oracle_gain")
        ]
        capture = paired(seeds, got, half)
        targets.append(_target(f"{name}: learned gain >= 50% of the oracle-gate gain", capture))
        if name in areas and BASELINE in areas:
            area = paired(seeds, areas[name], areas[BASELINE])
            targets.append(_target(f"{name}: platform-total frontier area > no-gate's", area))
    return GateSection(areas, bound, targets)


def _target(what: str, p: Paired) -> GateTarget:
    return GateTarget(what, p, passes(p, 1.0))
