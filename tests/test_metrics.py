"""Metrics against scikit-learn on random and tied cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from dmmp_rec.metrics import auc, calibration, log_loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(500) < 0.1
    scores = np.round(rng.random(500) + labels * 0.3, 1)  # rounding makes many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_extremes_and_missing_class() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(labels, np.zeros(4)) == 0.5
    assert math.isnan(auc(np.zeros(4), np.arange(4.0)))


def test_log_loss_and_calibration() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(300) < 0.2).astype(float)
    probs = np.clip(rng.random(300), 0.01, 0.99)
    assert log_loss(labels, probs) == pytest.approx(sk_log_loss(labels, probs), rel=1e-9)
    assert calibration(labels, np.full(300, labels.mean())) == pytest.approx(1.0)
    assert calibration(labels, np.full(300, 2 * labels.mean())) == pytest.approx(2.0)
