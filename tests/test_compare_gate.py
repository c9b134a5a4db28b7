"""The comparison's gate section (compare.gate_analysis / gate_table) on a hand-made result."""

from __future__ import annotations

import pytest

from dmmp_rec.compare.columns import KnobPoint
from dmmp_rec.compare.gate_analysis import gate_section, platform_areas
from dmmp_rec.compare.gate_table import gate_markdown
from dmmp_rec.compare.records import (
    Comparison,
    ModelEntry,
    RunRecord,
    SplitColumns,
    TrainFigures,
)
from dmmp_rec.eval.gate_records import MetricBound, OracleGateBound, RateBound

SEEDS = [7, 8, 9]


def _point(clicks: float, conv: float) -> KnobPoint:
    return KnobPoint(beta=0.0, clicks=0.5, conversions=0.2, bait=0.1, gate=0.5,
                     clicks_total=clicks, conversions_total=conv)  # fmt: skip


def _bound(oracle: float, learned: float) -> OracleGateBound:
    traits = {"propensity": 0.4, "purchase_rho": 0.1}
    rate = RateBound(rate=10.0, global_flat=0.0, global_learned=0.0, oracle=0.0,
                     oracle_learned=0.0, best_beta_flat=0.0, best_beta_learned=0.0,
                     oracle_gain=oracle, learned_gain=learned, captured=learned / oracle,
                     best_beta_correlation=traits,
                     trait_gate_gain={"propensity": 0.01})  # fmt: skip
    one = MetricBound(users=3, rates=[rate], oracle_gain=oracle, learned_gain=learned,
                      captured=learned / oracle)  # fmt: skip
    return OracleGateBound(k=50, flat_gate_logit=0.0, betas=[0.0], platform_total=one,
                           per_user_mean=one)  # fmt: skip


def _result(dmmp_conv: list[float], learned: list[float]) -> Comparison:
    def runs(convs: list[float], learned: list[float], oracle: float) -> list[RunRecord]:
        return [
            RunRecord(s, TrainFigures.of({}), 0.0, {"test": SplitColumns(
                metrics={},
                # a straight frontier from (100 clicks, 0 conversions) to (0, c)
                frontier=[_point(100.0, 0.0), _point(0.0, c)],
                oracle_gate=_bound(oracle, g),
            )})
            for s, c, g in zip(SEEDS, convs, learned, strict=True)
        ]  # fmt: skip

    result = Comparison("", "", None, 7, SEEDS, ["test"], 1, 1, 1, [])
    result.models = {
        "dmmp": ModelEntry("DMMP", "DMMP", "dmmp_rec", [], runs(dmmp_conv, learned, 0.04)),
        "no_gate": ModelEntry(
            "no gate", "no gate", "dmmp_rec", [], runs([4.0, 4.0, 4.0], [0.0] * 3, 0.05)
        ),
    }
    return result


def test_platform_area_is_the_mean_of_a_straight_frontier() -> None:
    areas = platform_areas(_result([6.0, 5.0, 4.4], [0.03] * 3), "test")
    # a line from (100, 0) to (0, c): mean best conversions over clicks [0, 100] is c / 2
    assert areas["dmmp"] == pytest.approx([3.0, 2.5, 2.2])
    assert areas["no_gate"] == pytest.approx([2.0, 2.0, 2.0])


def test_targets_by_hand() -> None:
    section = gate_section(_result([6.0, 5.6, 5.2], [0.03, 0.028, 0.026]), "test")
    capture, area = section.targets
    # learned gains 0.03 / 0.028 / 0.026 against half the oracle gain, 0.02; differences
    # 0.010 / 0.008 / 0.006: mean 0.008, half-width 4.303 * 0.002 / sqrt(3) = 0.005
    assert capture.paired.ratios == pytest.approx([1.5, 1.4, 1.3])
    assert capture.paired.difference.lo == pytest.approx(0.008 - 0.004969, abs=1e-5)
    assert capture.passed is True
    # areas 3.0 / 2.8 / 2.6 against 2.0
    assert area.paired.ratios == pytest.approx([1.5, 1.4, 1.3])
    assert area.passed is True
    b = section.bound["dmmp"]["platform_total"]
    assert b.oracle_gain.mean == pytest.approx(0.04)
    assert b.captured.mean == pytest.approx(0.7)
    assert b.trait_correlation == pytest.approx({"propensity": 0.4, "purchase_rho": 0.1})
    assert b.trait_gate_gain == pytest.approx({"propensity": 0.01})
    assert "no_gate" in section.bound  # its bound is reported; it has no target
    # the section as comparison.json holds it
    written = section.to_dict()
    assert written["targets"][0]["paired"]["ratios"] == pytest.approx([1.5, 1.4, 1.3])
    assert written["bound"]["dmmp"]["platform_total"]["per_seed"]["oracle_gain"] == [0.04] * 3
    # a gate that captures a quarter of the bound misses
    missed = gate_section(_result([6.0, 5.6, 5.2], [0.01, 0.01, 0.01]), "test")
    assert missed.targets[0].passed is False


def test_markdown_names_every_target() -> None:
    result = _result([6.0, 5.6, 5.2], [0.03, 0.028, 0.026])
    text = "\n".join(gate_markdown(result, {"test": gate_section(result, "test")}))
    assert "learned gain >= 50% of the oracle-gate gain" in text
    assert "platform-total frontier area > no-gate's" in text
    assert "| DMMP | platform totals | 0.0400" in text
    assert text.count("| pass |") == 2


def test_per_user_frontier_area_is_read_without_a_two_tower() -> None:
    from dmmp_rec.compare.analysis import frontier_readings

    result = _result([6.0, 5.6, 5.2], [0.03] * 3)
    del result.models["no_gate"]
    for seed_run in result.models["dmmp"].runs:
        columns = seed_run.splits["test"]
        columns.metrics = {"expected_conversions@50": 0.2}
        assert columns.frontier is not None
        columns.frontier[0].clicks, columns.frontier[0].conversions = 0.6, 0.1
        columns.frontier[1].clicks, columns.frontier[1].conversions = 0.2, 0.3
    readings = frontier_readings(result, "test")
    # one frontier model with a range: the mean of a straight line from 0.1 to 0.3
    assert readings["dmmp"].area == pytest.approx([0.2, 0.2, 0.2])
    assert readings["dmmp"].conv_at_ref == [None, None, None]
