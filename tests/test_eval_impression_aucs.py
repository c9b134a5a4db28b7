"""One AUC computation for training's validation and evaluation's report: the `val/*` keys and
the report's teacher / student AUCs are the same numbers of `metrics.impression_aucs`."""

from __future__ import annotations

import numpy as np
import pytest

from dmmp_rec.eval.teacher_eval import student_metrics, teacher_metrics
from dmmp_rec.metrics import auc, impression_aucs
from dmmp_rec.train.validation import teacher_and_student_aucs


def _rows(with_student: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 500
    click = (rng.random(n) < 0.3).astype(np.float32)
    conversion = (click * (rng.random(n) < 0.4)).astype(np.float32)
    names = ["pctr", "pcvr", "pctcvr"] + (["s_c", "s_v", "fused"] if with_student else [])
    return {"click": click, "conversion": conversion, **{k: rng.random(n) for k in names}}


def test_validation_keys_and_report_sections_share_the_aucs() -> None:
    rows = _rows(with_student=True)
    val = teacher_and_student_aucs(rows)
    teacher, student = teacher_metrics(rows), student_metrics(rows)
    assert list(val) == [
        "val/teacher_ctr_auc",
        "val/teacher_ctcvr_auc",
        "val/teacher_cvr_auc",
        "val/rows",
        "val/student_ctr_auc",
        "val/student_ctcvr_auc",
        "val/student_fused_ctcvr_auc",
    ]
    assert val["val/teacher_ctr_auc"] == teacher["ctr"]["auc"]  # type: ignore[index]
    assert val["val/teacher_cvr_auc"] == teacher["cvr"]["auc"]  # type: ignore[index]
    assert val["val/teacher_ctcvr_auc"] == teacher["ctcvr"]["auc"]  # type: ignore[index]
    assert val["val/student_ctr_auc"] == student["s_c_ctr_auc"]
    assert val["val/student_ctcvr_auc"] == student["s_v_ctcvr_auc"]
    assert val["val/student_fused_ctcvr_auc"] == student["fused_ctcvr_auc"]
    assert val["val/rows"] == 500.0
    clicked = rows["click"] > 0  # CVR over clicked rows only (ESMM)
    expected = auc(rows["conversion"][clicked], rows["pcvr"][clicked])
    assert impression_aucs(rows).teacher_cvr == pytest.approx(expected)
    assert student["fused_ctr_auc"] == auc(rows["click"], rows["fused"])


def test_a_teacher_only_model_has_no_student_keys() -> None:
    rows = _rows(with_student=False)
    aucs = impression_aucs(rows)
    assert aucs.student_ctr is None and aucs.fused_ctr is None
    assert "val/student_ctr_auc" not in teacher_and_student_aucs(rows)
    assert student_metrics(rows, aucs) == {}
