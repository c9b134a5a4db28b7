"""The oracle-gate bound: how much any personal gate could gain over one global serving knob.

For one trained three-tower model, the knob's grid gives every sample user a top-K list at each
beta. Three values of a metric V = clicks + lambda * conversions (lambda: the exchange rate
between a conversion and a click), summed (platform totals) or averaged (per-user ratios to the
oracle) over the users:

- `global_flat`: one global beta on a flat gate (every user's gate logit set to the median of
  the learned ones): the best any global knob does with these towers;
- `global_learned`: one global beta on the learned gate (what the model serves);
- `oracle`: each user's own beta on the flat gate, chosen with the ground truth: the most any
  personal gate (a per-user shift of the same towers' scores) could reach on this grid.

oracle_gain = oracle / global_flat - 1 bounds a gate's worth; learned_gain =
global_learned / global_flat - 1 is what the learned gate got; captured is their ratio.
`oracle_learned` (each user's own beta on top of the learned gate) says what is still left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dmmp_rec.eval.gate_records import MetricBound, OracleGateBound, RateBound
from dmmp_rec.eval.records import MetricKey

# Exchange rates: a conversion is worth lambda clicks. Platform totals count conversions
# (~1/30 of clicks in a top 50), so a purchase worth 10-100 clicks is where the trade-off bites;
# the per-user means are ratios to the oracle of similar size, so lambda near 1.
TOTAL_RATES = (10.0, 30.0, 100.0)
MEAN_RATES = (0.5, 1.0, 2.0)
METRICS = {
    "platform_total": ("exp_clicks_total", "exp_conversions_total", TOTAL_RATES),
    "per_user_mean": ("exp_clicks_ratio", "exp_conversions_ratio", MEAN_RATES),
}
SCOPE = "sample"


def flat_ranker_name(j: int) -> str:
    """The ranker of the j-th beta on the flat gate while metrics are computed."""
    return f"flat{j}"


def flat_gate_logit(z: np.ndarray) -> float:
    """The logit every user shares on the flat gate: the learned gates' median, so the grid of
    beta stays centred where the model's gates are."""
    return float(np.median(z)) if z.size else 0.0


def _grid(
    per_user: dict[MetricKey, np.ndarray], names: Sequence[str], metric: str, col: int
) -> np.ndarray:
    """[n_beta, n_users] of one metric at one K from the rankers' sample arrays."""
    return np.stack([per_user[MetricKey(n, SCOPE, metric)][:, col] for n in names])


def _trait_correlations(
    value: np.ndarray, traits: dict[str, np.ndarray] | None
) -> dict[str, float]:
    """Pearson correlation of each user's best grid index (more conversion-ward = higher) with
    each hidden trait: does the world's heterogeneity explain who wants another knob value?"""
    if not traits:
        return {}
    best = value.argmax(axis=0).astype(np.float64)
    out = {}
    for name, trait in traits.items():
        ok = np.isfinite(trait)
        both = best[ok].std() > 0 and trait[ok].std() > 0
        out[name] = float(np.corrcoef(best[ok], trait[ok])[0, 1]) if both else math.nan
    return out


TRAIT_SLOPES = (0.25, 0.5, 1.0, 2.0)  # knob steps per sd of a trait, either sign


def _trait_gate(value: np.ndarray, betas: Sequence[float], trait: np.ndarray, reduce: Any) -> float:
    """The best value of a gate that knows a hidden trait: user u takes the grid beta nearest
    to b0 + a * (trait z-score), over every finite grid b0 and slope +-a (or one global beta)."""
    grid = np.array([b for b in betas if math.isfinite(b)], dtype=np.float64)
    cols = np.array([j for j, b in enumerate(betas) if math.isfinite(b)])
    best = float(reduce(value, axis=1).max())
    sd = trait.std()
    if grid.size < 2 or not sd > 0:
        return best
    score = (trait - trait.mean()) / sd
    users = np.arange(value.shape[1])
    for b0 in grid:
        for a in (*TRAIT_SLOPES, *(-x for x in TRAIT_SLOPES)):
            want = b0 + a * score
            j = cols[np.abs(grid[:, None] - want[None, :]).argmin(axis=0)]
            best = max(best, float(reduce(value[j, users])))
    return best


def rate_row(
    learned: tuple[np.ndarray, np.ndarray],
    flat: tuple[np.ndarray, np.ndarray],
    rate: float,
    betas: Sequence[float],
    reduce: str,
    traits: dict[str, np.ndarray] | None = None,
) -> RateBound:
    """The bound at one exchange rate from (clicks, conversions) grids [n_beta, n_users];
    `reduce` is 'sum' (platform totals) or 'mean' over users; `traits`: hidden per-user values
    (aligned with the users) to correlate with each user's best knob value."""
    agg = np.sum if reduce == "sum" else np.mean
    value_l = learned[0] + rate * learned[1]
    value_f = flat[0] + rate * flat[1]
    keep = np.isfinite(value_l).all(0) & np.isfinite(value_f).all(0)
    value_l, value_f = value_l[:, keep], value_f[:, keep]
    kept = {k: np.asarray(v, np.float64)[keep] for k, v in (traits or {}).items()}
    per_beta_l, per_beta_f = agg(value_l, axis=1), agg(value_f, axis=1)
    g_l, g_f = float(per_beta_l.max()), float(per_beta_f.max())
    oracle = float(agg(value_f.max(axis=0)))
    oracle_l = float(agg(value_l.max(axis=0)))
    gain = oracle / g_f - 1.0 if g_f > 0 else math.nan
    got = g_l / g_f - 1.0 if g_f > 0 else math.nan
    return RateBound(
        rate=float(rate),
        global_flat=g_f,
        global_learned=g_l,
        oracle=oracle,
        oracle_learned=oracle_l,
        best_beta_flat=float(betas[int(per_beta_f.argmax())]),
        best_beta_learned=float(betas[int(per_beta_l.argmax())]),
        oracle_gain=gain,
        learned_gain=got,
        captured=got / gain if gain > 0 else math.nan,
        best_beta_correlation=_trait_correlations(value_f, kept),
        # a gate on the flat towers that knew the trait exactly: how much of the bound the
        # world's heterogeneity could explain
        trait_gate_gain={
            k: _trait_gate(value_f, betas, t, agg) / g_f - 1.0 if g_f > 0 else math.nan
            for k, t in kept.items()
        },
    )


def oracle_gate_report(
    per_user: dict[MetricKey, np.ndarray],
    learned_names: Sequence[str],
    flat_names: Sequence[str],
    betas: Sequence[float],
    ks: list[int],
    flat_z: float,
    k: int = 50,
    traits: dict[str, np.ndarray] | None = None,
) -> OracleGateBound:
    """The bound at K = k on both metrics, at each of their exchange rates, plus `captured`
    over the rates: the mean learned gain over the mean oracle gain; `traits` as in
    `rate_row`."""
    col = ks.index(k) if k in ks else len(ks) - 1
    bounds = {}
    for name, (clicks, conv, rates) in METRICS.items():
        learned = (_grid(per_user, learned_names, clicks, col),
                   _grid(per_user, learned_names, conv, col))  # fmt: skip
        flat = (_grid(per_user, flat_names, clicks, col), _grid(per_user, flat_names, conv, col))
        reduce = "sum" if name == "platform_total" else "mean"
        rows = [rate_row(learned, flat, r, betas, reduce, traits) for r in rates]
        gain = float(np.mean([r.oracle_gain for r in rows]))
        got = float(np.mean([r.learned_gain for r in rows]))
        captured = got / gain if gain > 0 else math.nan
        bounds[name] = MetricBound(int(learned[0].shape[1]), rows, gain, got, captured)
    platform, per_user_mean = bounds["platform_total"], bounds["per_user_mean"]
    return OracleGateBound(ks[col], flat_z, list(betas), platform, per_user_mean)


def drop_rankers(per_user: dict[MetricKey, np.ndarray], names: Sequence[str]) -> None:
    """Remove the flat-gate rankers' arrays once the bound is computed."""
    for key in [k for k in per_user if k.ranker in names]:
        del per_user[key]
