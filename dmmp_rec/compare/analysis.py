"""What the comparison reads off its runs: per-seed values, frontier readings at the two-tower's
clicks, the frontier's area, and the serving knob's operating point chosen on validation.

Everything here is a pure function of comparison.json's `models[*].runs`, so the report can be
re-derived (and tested) without training anything. A run's split holds `metrics` (the table
columns) and, for three-tower models, `frontier`: points {beta, clicks, conversions, bait,
gate} at K = 50, in beta order. A model without a frontier (the two-tower, the DSSM peer) is
the single point of its metrics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dmmp_rec.compare.stats import interval
from dmmp_rec.eval.frontier import best_at_clicks, click_range, mean_best_conversions

REFERENCE = "two_tower"  # the point every frontier is read at
CLICK_SHARE = 0.9  # "at >= 0.9x the two-tower's expected clicks"
CLICKS, CONVERSIONS, BAIT = "expected_clicks@50", "expected_conversions@50", "bait_share@50"


def runs_by_seed(result: dict[str, Any], model: str) -> dict[int, dict[str, Any]]:
    return {int(r["seed"]): r for r in result["models"].get(model, {}).get("runs", [])}


def seeds(result: dict[str, Any]) -> list[int]:
    return [int(s) for s in result["seeds"]]


def value(result: dict[str, Any], model: str, split: str, key: str, seed: int) -> float | None:
    run = runs_by_seed(result, model).get(seed)
    if run is None or split not in run["splits"]:
        return None
    v = run["splits"][split]["metrics"].get(key)
    return None if v is None or not math.isfinite(float(v)) else float(v)


def values(result: dict[str, Any], model: str, split: str, key: str) -> list[float | None]:
    """One value per seed of the comparison (None where missing), in seed order."""
    return [value(result, model, split, key, s) for s in seeds(result)]


def summary(result: dict[str, Any], split: str, columns: tuple[str, ...]) -> dict[str, dict]:
    """{model: {column: Interval}} over the seeds."""
    return {
        name: {c: interval(values(result, name, split, c)) for c in columns}
        for name in result["models"]
    }


def curve(run_split: dict[str, Any]) -> np.ndarray:
    """[n, 3] (clicks, conversions, bait) of a run's frontier, or its single point."""
    points = run_split.get("frontier")
    if points:
        rows = [[_f(p["clicks"]), _f(p["conversions"]), _f(p["bait"])] for p in points]
        return np.array(rows, dtype=np.float64)
    m = run_split["metrics"]
    return np.array([[_f(m.get(CLICKS)), _f(m.get(CONVERSIONS)), _f(m.get(BAIT))]])


def _f(x: Any) -> float:
    return math.nan if x is None else float(x)


def has_frontier(result: dict[str, Any], model: str) -> bool:
    return any(
        split.get("frontier")
        for run in result["models"].get(model, {}).get("runs", [])
        for split in run["splits"].values()
    )


def frontier_readings(
    result: dict[str, Any], split: str, reference: str = REFERENCE, share: float = CLICK_SHARE
) -> dict[str, dict[str, list[float | None]]]:
    """Per model with retrieval, per seed (seed order): the best expected conversions at the
    reference's expected clicks (`conv_at_ref`) and at `share` of them (`conv_at_share`), the
    bait share there (`bait_at_share`), and the mean best conversions over the click range
    every frontier model of that seed spans (`area`; NaN for single points)."""
    out: dict[str, dict[str, list[float | None]]] = {}
    models = [m for m in result["models"] if value_any(result, m, split, CONVERSIONS)]
    frontier_models = [m for m in models if has_frontier(result, m)]
    for name in models:
        out[name] = {k: [] for k in ("conv_at_ref", "conv_at_share", "bait_at_share", "area")}
    for seed in seeds(result):
        ref_clicks = value(result, reference, split, CLICKS, seed)
        curves = {
            m: curve(runs_by_seed(result, m)[seed]["splits"][split])
            for m in models
            if seed in runs_by_seed(result, m) and split in runs_by_seed(result, m)[seed]["splits"]
        }
        ranges = [click_range(curves[m]) for m in frontier_models if m in curves]
        lo = max((r[0] for r in ranges), default=math.nan)
        hi = min((r[1] for r in ranges), default=math.nan)
        for name in models:
            c = curves.get(name)
            row = out[name]
            if c is None:
                for k in row:
                    row[k].append(None)
                continue
            # without the reference (a comparison of three-tower models only) the area remains
            at_ref = None if ref_clicks is None else best_at_clicks(c, ref_clicks)
            at_share = None if ref_clicks is None else best_at_clicks(c, share * ref_clicks)
            row["conv_at_ref"].append(None if at_ref is None else at_ref[0])
            row["conv_at_share"].append(None if at_share is None else at_share[0])
            row["bait_at_share"].append(None if at_share is None else at_share[1])
            area = mean_best_conversions(c, lo, hi) if name in frontier_models else math.nan
            row["area"].append(area if math.isfinite(area) else None)
    return out


def value_any(result: dict[str, Any], model: str, split: str, key: str) -> bool:
    return any(v is not None for v in values(result, model, split, key))


def operating_points(
    result: dict[str, Any],
    model: str,
    reference: str = REFERENCE,
    share: float = CLICK_SHARE,
    choose_on: str = "val",
    read_on: str = "test",
) -> list[dict[str, Any] | None]:
    """Per seed: the grid beta with the most validation conversions among those keeping
    validation clicks >= `share` x the reference's, and the test point at that beta (what a
    deployment would see: the knob is set on validation, the test day is only read)."""
    out: list[dict[str, Any] | None] = []
    for seed in seeds(result):
        run = runs_by_seed(result, model).get(seed)
        ref = value(result, reference, choose_on, CLICKS, seed)
        if run is None or ref is None or not all(s in run["splits"] for s in (choose_on, read_on)):
            out.append(None)
            continue
        chosen = run["splits"][choose_on].get("frontier") or []
        read = run["splits"][read_on].get("frontier") or []
        ok = [
            (j, p)
            for j, p in enumerate(chosen)
            if p["clicks"] is not None and p["clicks"] >= share * ref
        ]
        if not ok or len(read) != len(chosen):
            out.append(None)
            continue
        j, p = max(ok, key=lambda jp: _f(jp[1]["conversions"]))
        q = read[j]
        out.append(
            {
                "beta": float(p["beta"]),
                "val": {"clicks": p["clicks"], "conversions": p["conversions"], "bait": p["bait"]},
                "test": {"clicks": q["clicks"], "conversions": q["conversions"], "bait": q["bait"]},
            }
        )
    return out
