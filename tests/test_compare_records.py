"""The comparison as records: an old comparison.json (written before the records by the
tiny-world fingerprint, absolute paths replaced) is read into records and written back equal,
the analysis re-derived from the records equals the sections that file holds, and the report
rendered from the records is that run's comparison.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dmmp_rec.compare.columns import KnobPoint
from dmmp_rec.compare.gate_table import gate_markdown
from dmmp_rec.compare.records import Comparison, SplitColumns, json_safe
from dmmp_rec.compare.runner import analyse
from dmmp_rec.compare.table import comparison_markdown

REPORTS = Path(__file__).parent / "fixtures" / "reports"
ADDED = ("summary", "readings", "operating_points", "targets", "gate")


def _raw() -> dict[str, Any]:
    return json.loads((REPORTS / "comparison.json").read_text())


def test_an_old_comparison_reads_into_records_and_writes_back_equal() -> None:
    raw = _raw()
    comparison = Comparison.from_dict(raw)
    assert json_safe(comparison.to_dict()) == {k: v for k, v in raw.items() if k not in ADDED}
    again = Comparison.from_dict(json_safe(comparison.to_dict()))
    assert json_safe(again.to_dict()) == json_safe(comparison.to_dict())


def test_the_analysis_of_the_records_is_the_files() -> None:
    text = (REPORTS / "comparison.json").read_text()
    comparison = Comparison.from_dict(json.loads(text))
    result = json_safe(comparison.to_dict() | analyse(comparison).to_dict())
    # the same keys, order and values: the text write_reports would give is the file's
    assert json.dumps(result, indent=1) + "\n" == text


def test_the_report_rendered_from_the_records_is_the_files() -> None:
    comparison = Comparison.from_dict(_raw())
    found = analyse(comparison)
    markdown = comparison_markdown(comparison, found, gate_markdown(comparison, found.gate))
    assert markdown == (REPORTS / "comparison.md").read_text()


def test_the_records_hold_the_files_values() -> None:
    raw = _raw()
    comparison = Comparison.from_dict(raw)
    assert comparison.seeds == [7, 8] and list(comparison.models) == list(raw["models"])
    run = comparison.run("dmmp", 8)
    assert run is not None and run.seed == 8
    assert run.train.samples_trained == raw["models"]["dmmp"]["runs"][1]["train"]["samples_trained"]
    assert run.train.best is not None and run.train.best["step"] == 30
    old = raw["models"]["dmmp"]["runs"][1]["splits"]["test"]
    assert run.metric("test", "ctcvr_auc") == old["metrics"]["ctcvr_auc"]
    assert run.metric("test", "no_such_column") is None and run.metric("no_split", "x") is None
    assert comparison.run("dmmp", 99) is None and comparison.run("nobody", 7) is None
    frontier = run.splits["test"].frontier
    assert frontier is not None and len(frontier) == len(old["frontier"])
    assert frontier[0].beta == -math.inf and frontier[-1].beta == math.inf
    assert frontier[3].conversions_total == old["frontier"][3]["conversions_total"]
    bound = run.splits["test"].oracle_gate
    assert bound is not None
    assert bound.platform_total.learned_gain == old["oracle_gate"]["platform_total"]["learned_gain"]
    peer = comparison.run("rechub_mmoe", 7)
    assert peer is not None and peer.splits["test"].frontier is None
    assert peer.splits["test"].oracle_gate is None
    popularity = comparison.references["test"]["popularity"]
    assert popularity.label == raw["references"]["test"]["popularity"]["label"]


def test_a_column_that_is_not_finite_reads_as_none() -> None:
    columns = SplitColumns({"a": math.nan, "b": None, "c": 0.5}, None)
    assert [columns.metric(k) for k in ("a", "b", "c", "d")] == [None, None, 0.5, None]


def test_a_frontier_point_from_before_the_platform_totals_reads_without_them() -> None:
    point = KnobPoint.from_dict(
        {"beta": "inf", "clicks": 0.2, "conversions": 0.3, "bait": 0.1, "gate": 1.0}
    )
    assert point.beta == math.inf and point.clicks_total is None
    assert json_safe(point.to_dict())["beta"] == "inf"
    with pytest.raises(KeyError, match="clicks"):
        KnobPoint.from_dict({"beta": 0.0})
