"""Evaluation reports as typed records: an old report file (written at 8515a4c by the tiny-world
fingerprint, absolute paths replaced) is read into records and written back equal, and the
comparison's columns flattened from the records equal what that comparison.json holds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dmmp_rec.compare.flatten import bayes_metrics, reference_rows
from dmmp_rec.compare.records import SplitColumns, json_safe
from dmmp_rec.eval.gate_records import OracleGateBound
from dmmp_rec.eval.records import MetricKey, PerUser
from dmmp_rec.eval.report import _nan_to_none
from dmmp_rec.eval.report_types import EvalReport, RetrievalReport

REPORTS = Path(__file__).parent / "fixtures" / "reports"
OURS = ("eval_val.json", "dmmp_seed7_eval_test.json")
FILES = (*OURS, "rechub_mmoe_seed7_eval_test.json")


def _raw(name: str) -> dict[str, Any]:
    return json.loads((REPORTS / name).read_text())


@pytest.mark.parametrize("name", FILES)
def test_an_old_report_reads_into_records_and_writes_back_equal(name: str) -> None:
    text = (REPORTS / name).read_text()
    report = EvalReport.from_dict(json.loads(text))
    # the same keys, order and values: the text write_report would give is the file's
    assert json.dumps(_nan_to_none(report.to_dict()), indent=1) + "\n" == text


def test_the_records_hold_the_report_values() -> None:
    raw = _raw("dmmp_seed7_eval_test.json")
    report = EvalReport.from_dict(raw)
    assert report.teacher is not None and report.retrieval is not None
    assert report.teacher.ctcvr.auc == raw["teacher"]["ctcvr"]["auc"]
    assert report.teacher.counts["rows"] == raw["teacher"]["rows"]
    section = report.retrieval.retrieval
    assert section.k == [10, 50, 100] and section.split == "test"
    model = raw["retrieval"]["sample"]["exp_conversions_ratio"]["50"]
    assert section.model.at("sample", "exp_conversions_ratio", 50) == model
    assert section.model.at("sample", "exp_conversions_ratio", 7) is None
    frontier = report.retrieval.frontier
    assert frontier is not None and len(frontier.points) == len(raw["frontier"]["points"])
    assert frontier.points[0].beta == -math.inf and frontier.points[-1].beta == math.inf
    tr = report.retrieval.teacher_retrieval
    assert tr is not None and tr.student_best[50] == raw["teacher_retrieval"]["student_best"]["50"]
    assert list(report.retrieval.references) == ["popularity", "oracle_pctr", "oracle_pctcvr"]
    assert report.meta is not None and report.meta.split == "test"


def test_a_peer_report_has_only_its_sections() -> None:
    report = EvalReport.from_dict(_raw("rechub_mmoe_seed7_eval_test.json"))
    assert report.teacher is not None and report.bayes is not None
    assert report.retrieval is None and report.meta is None and report.student_impressions is None
    with pytest.raises(ValueError, match="no meta section"):
        _ = report.our_meta


@pytest.mark.parametrize(
    ("name", "key"),
    [("dmmp_seed7_eval_test.json", "dmmp_seed7_test"),
     ("rechub_mmoe_seed7_eval_test.json", "rechub_mmoe_seed7_test")],
)  # fmt: skip
def test_flattened_columns_equal_the_old_comparison(name: str, key: str) -> None:
    expected = _raw("comparison_columns.json")[key]
    columns = SplitColumns.of(EvalReport.from_dict(_raw(name)))
    assert json_safe(columns.to_dict()) == expected


def test_flattened_columns_are_the_report_values() -> None:
    raw = _raw("dmmp_seed7_eval_test.json")
    columns = SplitColumns.of(EvalReport.from_dict(raw))
    m = columns.metrics
    assert m["ctr_auc"] == raw["teacher"]["ctr"]["auc"]
    assert m["cvr_auc"] == raw["teacher"]["cvr"]["auc"]
    assert m["ctcvr_logloss"] == raw["teacher"]["ctcvr"]["log_loss"]
    assert m["click_recall@10"] == raw["retrieval"]["all_users"]["recall_click"]["10"]
    assert m["conversion_recall@50"] == raw["retrieval"]["all_users"]["recall_conversion"]["50"]
    assert m["ndcg@50"] == raw["retrieval"]["sample"]["ndcg_pctcvr"]["50"]
    assert m["bait_share@50"] == raw["retrieval"]["sample"]["bait_share"]["50"]
    tr = raw["teacher_retrieval"]
    assert m["teacher_conversions@50"] == tr["teacher"]["exp_conversions_ratio"]["50"]
    assert m["student_best_conversions@50"] == tr["student_best"]["50"]
    assert columns.frontier is not None
    point, old = columns.frontier[7], raw["frontier"]["points"][7]
    assert point.beta == float(old["beta"]) == 0.0
    assert point.conversions == old["exp_conversions_ratio"]["50"]
    assert point.clicks_total == old["exp_clicks_total"]["50"]
    assert columns.oracle_gate is not None
    assert _nan_to_none(columns.oracle_gate.to_dict()) == raw["oracle_gate"]


def test_bayes_and_reference_rows_equal_the_old_comparison() -> None:
    expected = _raw("comparison_columns.json")
    report = EvalReport.from_dict(_raw("dmmp_seed7_eval_test.json"))
    assert json_safe(bayes_metrics(report)) == expected["bayes_test"]
    rows = {name: row.to_dict() for name, row in reference_rows(report).items()}
    assert json_safe(rows) == expected["references_test"]
    oracle = reference_rows(report)["oracle_pctcvr"].metrics  # sampled only: its recalls too
    raw = _raw("dmmp_seed7_eval_test.json")["references"]["oracle_pctcvr"]["sample"]
    assert oracle["click_recall@50"] == raw["recall_click"]["50"]


def test_per_user_values_cross_the_gather_as_strings_and_back() -> None:
    per_user = PerUser(
        {MetricKey("beta0", "sample", "bait_share"): np.ones((2, 3))}, np.array([4, 9])
    )
    back = PerUser.from_arrays(per_user.to_arrays())
    assert list(back.values) == [MetricKey("beta0", "sample", "bait_share")]
    np.testing.assert_array_equal(back.sample_users, [4, 9])
    assert PerUser.from_arrays(PerUser(dict(per_user.values)).to_arrays()).sample_users is None


def test_a_retrieval_report_without_optional_sections_writes_none_of_them() -> None:
    raw = _raw("eval_val.json")
    minimal = {"retrieval": raw["retrieval"], "references": raw["references"]}
    assert _nan_to_none(RetrievalReport.from_dict(minimal).to_dict()) == minimal


def test_an_oracle_gate_bound_from_before_the_traits_reads_back_without_them() -> None:
    raw = _raw("eval_val.json")["oracle_gate"]
    for metric in ("platform_total", "per_user_mean"):
        for row in raw[metric]["rates"]:
            del row["best_beta_correlation"], row["trait_gate_gain"]
    bound = OracleGateBound.from_dict(raw)
    assert bound.platform_total.rates[0].trait_gate_gain is None
    assert bound.metric("per_user_mean").users == raw["per_user_mean"]["users"]
    assert _nan_to_none(bound.to_dict()) == raw
