"""Conversion distillation over in-batch candidates: which pairs, which scores, which gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model import B, _batch, _config, _model

from dmmp_rec.config import ConfigError
from dmmp_rec.model.candidates import candidate_shifts, conversion_candidates
from dmmp_rec.model.losses import listwise_distill

R = 5


def _groups(seed: int = 0, batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pooled user, item and context embeddings of the test model's widths, as leaves."""
    g = torch.Generator().manual_seed(seed)
    user, item, ctx = (torch.randn(batch, w, generator=g, requires_grad=True) for w in (16, 12, 4))
    return user, item, ctx


def test_candidates_pair_each_user_with_its_item_then_rolled_items() -> None:
    model = _model().eval()
    dense = model.dense
    user, item, ctx = _groups()
    with torch.no_grad():
        own = dense.teacher(torch.cat([user, item, ctx], dim=1))
    cands = conversion_candidates(dense.teacher, own, dense.student, user, item, ctx, R)
    assert cands.teacher_pctcvr.shape == cands.s_v.shape == (B, 1 + R)
    for r in range(1 + R):
        rolled = item.roll(r, 0)
        with torch.no_grad():
            t = dense.teacher(torch.cat([user, rolled, ctx], dim=1))
            s = dense.student(user, ctx, rolled)
        torch.testing.assert_close(cands.teacher_pctcvr[:, r], t.pctcvr)
        torch.testing.assert_close(cands.s_v[:, r].detach(), s.s_v)


def test_candidate_ranking_trains_the_towers_only() -> None:
    model = _model()
    dense = model.dense
    user, item, ctx = _groups()
    own = dense.teacher(torch.cat([user, item, ctx], dim=1))
    cands = conversion_candidates(dense.teacher, own, dense.student, user, item, ctx, R)
    assert not cands.teacher_pctcvr.requires_grad
    listwise_distill(cands.s_v, cands.teacher_pctcvr, 1.0).backward()
    assert user.grad is None and item.grad is None and ctx.grad is None  # no shared table moves
    assert all(p.grad is None for p in dense.teacher.parameters())
    towers = [dense.student.user_tower, dense.student.conversion_tower]
    for tower in towers:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    assert all(p.grad is None for p in dense.student.click_tower.parameters())


def test_listwise_distill_is_the_kl_between_candidate_softmaxes() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(6, 4, generator=g) * 0.01 + 1e-4
    s = torch.randn(6, 4, generator=g) * 3
    temp = 2.0
    t = np.log(p.numpy()) / temp
    q = np.exp(t - t.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    z = s.numpy() / temp
    z = z - z.max(1, keepdims=True)
    log_m = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = temp**2 * (q * (np.log(q) - log_m)).sum(1).mean()
    assert float(listwise_distill(s, p, temp)) == pytest.approx(expected, rel=1e-5)
    # a student ranking like the teacher, up to a per-user shift, loses nothing
    same = torch.log(p) + torch.randn(6, 1, generator=g)
    assert float(listwise_distill(same, p, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_candidate_term_is_its_own_term_with_its_own_weight() -> None:
    batch_seed = 1
    with_cands = _model(loss={"distill_candidates": R, "weighting": "scaled"})
    without = _model(loss={"distill_candidates": 0, "weighting": "scaled"})
    assert set(with_cands.loss_terms) - set(without.loss_terms) == {"distill/ctcvr_rank"}
    _, a = with_cands(_batch(batch_seed))
    _, b = without(_batch(batch_seed))
    assert float(a["loss/distill/ctcvr_rank"]) > 0
    assert "weight/distill/ctcvr_rank" in a and "loss/distill/ctcvr_rank" not in b
    # every other term, the pointwise distill/ctcvr included, is the same with and without
    for term in without.loss_terms:
        torch.testing.assert_close(a[f"loss/{term}"], b[f"loss/{term}"])


def test_small_batches_use_every_other_row_once() -> None:
    assert candidate_shifts(4, 8) == [1, 2, 3]
    assert candidate_shifts(32, 8) == list(range(1, 9))
    assert candidate_shifts(1, 8) == []
    model = _model()
    for batch in (1, 3):
        user, item, ctx = _groups(batch=batch)
        own = model.teacher(torch.cat([user, item, ctx], dim=1))
        cands = conversion_candidates(model.teacher, own, model.student, user, item, ctx, 8)
        assert cands.s_v.shape == cands.teacher_pctcvr.shape == (batch, batch)


def test_config_rejects_negative_candidates() -> None:
    with pytest.raises(ConfigError, match="model.loss.distill_candidates"):
        _config(loss={"distill_candidates": -1})
