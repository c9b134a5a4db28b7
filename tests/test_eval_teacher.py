"""Impression metrics of the teacher and their Bayes ceilings against scikit-learn."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score
from support import tiny_config

from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.data.schema import split_files
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.eval.teacher_eval import (
    bayes_metrics,
    probability_metrics,
    student_metrics,
    teacher_metrics,
)
from dmmp_rec.inference.split_scores import score_rows
from dmmp_rec.model import build_model


def test_probability_metrics_follow_the_esmm_conventions() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    pctr = rng.uniform(0.01, 0.3, n)
    pcvr = rng.uniform(0.01, 0.5, n)
    click = (rng.random(n) < pctr).astype(np.float32)
    conv = click * (rng.random(n) < pcvr)
    m = probability_metrics(click, conv, pctr, pcvr, pctr * pcvr)
    clicked = click > 0
    assert m["ctr"]["auc"] == pytest.approx(roc_auc_score(click, pctr), abs=1e-12)
    # CVR over clicked rows only; CTCVR over all rows
    assert m["cvr"]["auc"] == pytest.approx(roc_auc_score(conv[clicked], pcvr[clicked]), abs=1e-12)
    assert m["ctcvr"]["auc"] == pytest.approx(roc_auc_score(conv, pctr * pcvr), abs=1e-12)
    assert m["ctr"]["log_loss"] == pytest.approx(log_loss(click, pctr), rel=1e-9)
    assert m["cvr"]["log_loss"] == pytest.approx(log_loss(conv[clicked], pcvr[clicked]), rel=1e-9)
    assert m["cvr"]["observed_rate"] == pytest.approx(conv[clicked].mean())
    assert m["ctr"]["predicted_rate"] == pytest.approx(pctr.mean())
    assert m["ctr"]["calibration"] == pytest.approx(pctr.mean() / click.mean())
    # these are the true probabilities, so calibration is near 1 and AUC well above chance
    assert 0.9 < m["ctr"]["calibration"] < 1.1 and m["ctr"]["auc"] > 0.6


def test_rows_carry_ids_of_the_parquet_and_bayes_uses_true_probabilities(
    tiny_world: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(tiny_world, tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    loader = loader_for_split(cfg, "test", drop_last=False)
    rows = score_rows(model, itertools.islice(loader, 20), cfg.features, torch.device("cpu"))
    n = rows["click"].size
    assert n == 20 * cfg.data.batch_size
    table = pq.read_table(split_files(tiny_world, "test")).slice(0, n)
    for key, col in (("user_id", "user_id"), ("item_id", "item_id"), ("hour", "ctx_hour")):
        np.testing.assert_array_equal(rows[key], table.column(col).to_numpy())
    np.testing.assert_array_equal(rows["click"], table.column("click").to_numpy())

    click, conv = rows["click"], rows["conversion"]
    assert click.sum() > 5
    t = teacher_metrics(rows)
    assert t["rows"] == n and t["clicks"] == int(click.sum())
    assert t["ctr"]["auc"] == pytest.approx(roc_auc_score(click, rows["pctr"]), abs=1e-12)
    s = student_metrics(rows)
    assert s["fused_ctr_auc"] == pytest.approx(roc_auc_score(click, rows["fused"]), abs=1e-12)

    truth = GroundTruth.load(tiny_world)
    u = table.column("user_id").to_numpy()
    i = table.column("item_id").to_numpy()
    h = table.column("ctx_hour").to_numpy()
    true_ctr = truth.pctr(u, i, h)
    b = bayes_metrics(rows, truth)
    assert b["ctr"]["auc"] == pytest.approx(roc_auc_score(click, true_ctr), abs=1e-12)
    true_ctcvr = true_ctr * truth.pcvr(u, i)
    if conv.sum() > 0:
        assert b["ctcvr"]["auc"] == pytest.approx(roc_auc_score(conv, true_ctcvr), abs=1e-12)
    # the truth beats an untrained model on clicks, and its rate matches the observed one
    assert b["ctr"]["auc"] > t["ctr"]["auc"]
    assert b["ctr"]["predicted_rate"] == pytest.approx(click.mean(), rel=0.35)
