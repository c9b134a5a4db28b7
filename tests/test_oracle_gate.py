"""The oracle-gate bound and platform totals on constructed cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmmp_rec.eval.oracle_gate import drop_rankers, oracle_gate_report, rate_row
from dmmp_rec.eval.oracle_metrics import summarise
from dmmp_rec.eval.ranking import sum_at
from dmmp_rec.eval.records import MetricKey

BETAS = [-1.0, 0.0, 1.0]
# [n_beta, n_users]: user 0 likes clicks, user 1 buys
FLAT_CLICKS = np.array([[10.0, 6.0], [9.0, 5.0], [5.0, 2.0]])
FLAT_CONV = np.array([[0.1, 0.1], [0.15, 0.3], [0.2, 0.5]])
# a learned gate that leans user 0 one grid step towards clicks, user 1 one towards buying
LEARNED_CLICKS = np.array([[10.0, 5.0], [10.0, 2.0], [9.0, 2.0]])
LEARNED_CONV = np.array([[0.1, 0.3], [0.1, 0.5], [0.15, 0.5]])


def test_rate_row_by_hand() -> None:
    row = rate_row((LEARNED_CLICKS, LEARNED_CONV), (FLAT_CLICKS, FLAT_CONV), 10.0, BETAS, "sum")
    # flat, per beta: user 0 (11, 10.5, 7), user 1 (7, 8, 7); sums (18, 18.5, 14)
    assert row.global_flat == pytest.approx(18.5) and row.best_beta_flat == 0.0
    # each user's own beta: 11 + 8
    assert row.oracle == pytest.approx(19.0)
    assert row.oracle_gain == pytest.approx(19.0 / 18.5 - 1.0)
    # learned, per beta: user 0 (11, 11, 10.5), user 1 (8, 7, 7); sums (19, 18, 17.5)
    assert row.global_learned == pytest.approx(19.0) and row.best_beta_learned == -1.0
    assert row.learned_gain == pytest.approx(row.oracle_gain)
    assert row.captured == pytest.approx(1.0)
    assert row.oracle_learned == pytest.approx(19.0)  # nothing left for a better gate
    # means over users: the same ratios, values halved
    mean = rate_row((LEARNED_CLICKS, LEARNED_CONV), (FLAT_CLICKS, FLAT_CONV), 10.0, BETAS, "mean")
    assert mean.global_flat == pytest.approx(9.25) and mean.oracle == pytest.approx(9.5)
    assert mean.captured == pytest.approx(1.0)


def test_a_gate_that_knows_the_trait_behind_the_best_beta_reaches_the_oracle() -> None:
    # user 1's trait is higher and user 1 wants a higher beta: the trait gate finds b0 = -1,
    # slope a with user 0 at -1 and user 1 at 0 (the oracle); an unrelated trait cannot
    grids = (FLAT_CLICKS, FLAT_CONV)
    row = rate_row(grids, grids, 10.0, BETAS, "sum", {"p": np.array([0.0, 1.0])})
    assert row.trait_gate_gain["p"] == pytest.approx(row.oracle_gain)
    assert row.best_beta_correlation["p"] == pytest.approx(1.0)
    three = tuple(np.hstack([g, g[:, :1]]) for g in grids)  # a third user like user 0
    traits = {"along": np.array([0.0, 2.0, 0.5]), "across": np.array([0.0, 1.0, 2.0])}
    row = rate_row(three, three, 10.0, BETAS, "sum", traits)
    # users 0 and 2 want -1 (11 each), user 1 wants 0 (8): oracle 30 over the global 29
    assert row.oracle == pytest.approx(30.0) and row.global_flat == pytest.approx(29.0)
    # "along" ranks user 1 highest: b0 = -1 with slope 0.5 puts user 1 alone at 0
    assert row.trait_gate_gain["along"] == pytest.approx(row.oracle_gain)
    # "across" puts user 1 between the others: no monotone gate on this grid beats one knob
    assert row.trait_gate_gain["across"] == pytest.approx(0.0)


def test_clicks_only_rate_has_no_gain() -> None:
    # at rate 0 every user's best beta is the most clicks (-1): one global knob is enough
    row = rate_row((FLAT_CLICKS, FLAT_CONV), (FLAT_CLICKS, FLAT_CONV), 0.0, BETAS, "sum")
    assert row.oracle_gain == 0.0 and math.isnan(row.captured)


def _per_user(name: str, clicks: np.ndarray, conv: np.ndarray) -> dict[MetricKey, np.ndarray]:
    """`name{j}/sample/metric` arrays [users, len(ks)] as evaluation gathers them (K 10, 50:
    the bound reads K = 50; K = 10 holds other numbers that must not be read)."""
    out = {}
    for j in range(len(BETAS)):
        for metric, grid in (
            ("exp_clicks_total", clicks),
            ("exp_conversions_total", conv),
            ("exp_clicks_ratio", clicks / 10.0),
            ("exp_conversions_ratio", conv),
        ):
            out[MetricKey(f"{name}{j}", "sample", metric)] = np.stack(
                [-np.ones(2), grid[j]], axis=1
            )
    return out


def test_report_reads_k50_on_both_metrics() -> None:
    per_user = {
        **_per_user("beta", LEARNED_CLICKS, LEARNED_CONV),
        **_per_user("flat", FLAT_CLICKS, FLAT_CONV),
    }
    names = [f"beta{j}" for j in range(3)], [f"flat{j}" for j in range(3)]
    report = oracle_gate_report(per_user, *names, BETAS, [10, 50], flat_z=-0.25)
    assert report.k == 50 and report.flat_gate_logit == -0.25
    total = report.platform_total
    assert total.users == 2
    at_30 = next(r for r in total.rates if r.rate == 30.0)
    # rate 30, flat: user 0 (13, 13.5, 11), user 1 (9, 14, 17), sums (22, 27.5, 28); oracle 30.5
    assert at_30.global_flat == pytest.approx(28.0) and at_30.oracle == pytest.approx(30.5)
    gains = [r.oracle_gain for r in total.rates]
    assert total.oracle_gain == pytest.approx(np.mean(gains))
    got = [r.learned_gain for r in total.rates]
    assert total.captured == pytest.approx(np.mean(got) / np.mean(gains))
    assert report.per_user_mean.rates[0].rate == 0.5
    drop_rankers(per_user, names[1])
    assert not any(k.ranker.startswith("flat") for k in per_user) and len(per_user) == 12


def test_platform_totals_are_sums_over_users_of_the_top_k() -> None:
    true_ctr = np.array([[0.5, 0.25, 0.125], [0.1, 0.2, 0.3]])
    per_user = {
        MetricKey("m", "sample", "exp_clicks_total"): sum_at(true_ctr, [1, 3]),
        MetricKey("m", "sample", "exp_clicks_ratio"): np.array([[0.5, 1.0], [0.25, np.nan]]),
    }
    out = summarise(per_user, [1, 3])["m"].scopes["sample"].metrics
    # totals: K=1: 0.5 + 0.1, K=3: 0.875 + 0.6; ratios: means, NaN left out
    assert out["exp_clicks_total"] == pytest.approx({1: 0.6, 3: 1.475})
    assert out["exp_clicks_ratio"] == pytest.approx({1: 0.375, 3: 1.0})
