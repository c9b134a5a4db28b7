"""Conversion distillation over in-batch candidates: which pairs, which scores, which gradients,
and the cheap scoring (first-layer products per row, towers run once) against the direct one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model import TEACHERS, B, _batch, _config, _model

from dmmp_rec.config import ConfigError
from dmmp_rec.config.model import TeacherConfig
from dmmp_rec.model.candidates import Candidates, candidate_shifts, forward_with_candidates
from dmmp_rec.model.losses import listwise_distill
from dmmp_rec.model.mlp import MLP
from dmmp_rec.model.teacher import Teacher

R = 5
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _groups(seed: int = 0, batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pooled user, item and context embeddings of the test model's widths, as leaves."""
    g = torch.Generator().manual_seed(seed)
    user, item, ctx = (torch.randn(batch, w, generator=g, requires_grad=True) for w in (16, 12, 4))
    return user, item, ctx


def _direct(dense, user, item, ctx, num_candidates):  # noqa: ANN001, ANN202
    """The candidate term computed the direct way (the implementation before the cheap one):
    the teacher re-run on every concatenated pair, the towers re-applied to detached inputs."""
    t = dense.teacher(torch.cat([user, item, ctx], dim=1))
    s = dense.student(user, ctx, item)
    du, di, dc = user.detach(), item.detach(), ctx.detach()
    shifts = candidate_shifts(user.shape[0], num_candidates)
    with torch.no_grad():
        others = [dense.teacher(torch.cat([du, di.roll(r, 0), dc], dim=1)).pctcvr for r in shifts]
    pctcvr = torch.stack([t.pctcvr.detach()] + others).T
    u = dense.student.user_embedding(du, dc)
    i_v = dense.student.conversion_embedding(di)
    rolled = torch.stack([i_v.roll(r, 0) for r in [0] + shifts])
    s_v = (u.unsqueeze(0) * rolled).sum(-1).T / dense.student.tau()
    return t, s, Candidates(pctcvr, s_v)


def _loss(t, s, c) -> torch.Tensor:  # noqa: ANN001
    """A loss reading every output the model's terms read, candidates included."""
    return (
        t.pctr.sum()
        + t.pctcvr.log().sum()
        + s.s_c.sum()
        + (s.s_v**2).sum()
        + s.fused.sum()
        + s.u.sum()
        + s.i_c.sum()
        + listwise_distill(c.s_v, c.teacher_pctcvr, 1.0)
    )


def test_candidates_pair_each_user_with_its_item_then_rolled_items() -> None:
    model = _model().eval()
    dense = model.dense
    user, item, ctx = _groups()
    t, s, cands = forward_with_candidates(dense.teacher, dense.student, user, item, ctx, R)
    assert cands.teacher_pctcvr.shape == cands.s_v.shape == (B, 1 + R)
    for r in range(1 + R):
        rolled = item.roll(r, 0)
        with torch.no_grad():
            t_r = dense.teacher(torch.cat([user, rolled, ctx], dim=1))
            s_r = dense.student(user, ctx, rolled)
        torch.testing.assert_close(cands.teacher_pctcvr[:, r], t_r.pctcvr, **TOL)
        torch.testing.assert_close(cands.s_v[:, r].detach(), s_r.s_v, **TOL)
    with torch.no_grad():
        t0 = dense.teacher(torch.cat([user, item, ctx], dim=1))
        s0 = dense.student(user, ctx, item)
    for got, want in zip(list(t) + list(s), list(t0) + list(s0), strict=True):
        torch.testing.assert_close(got.detach(), want, **TOL)


@pytest.mark.parametrize("teacher", TEACHERS)
@pytest.mark.parametrize("variant", ["dmmp", "no_gate"])
def test_cheap_scoring_matches_the_direct_one_in_values_and_gradients(
    teacher: str, variant: str
) -> None:
    """Same values and the same gradient on every parameter and embedding as re-running the
    teacher on each pair and the towers on detached inputs."""
    model = _model(variant=variant, teacher={"kind": teacher})
    dense = model.dense
    results = []
    for fn in (_direct, lambda *a: forward_with_candidates(dense.teacher, dense.student, *a)):
        model.zero_grad()
        user, item, ctx = _groups(seed=2)
        t, s, c = fn(dense, user, item, ctx, R) if fn is _direct else fn(user, item, ctx, R)
        _loss(t, s, c).backward()
        grads = {n: p.grad.clone() for n, p in dense.named_parameters() if p.grad is not None}
        grads.update(user=user.grad, item=item.grad, ctx=ctx.grad)
        results.append((list(t) + list(s) + list(c), grads))
    (values_a, grads_a), (values_b, grads_b) = results
    for a, b in zip(values_a, values_b, strict=True):
        torch.testing.assert_close(b.detach(), a.detach(), **TOL)
    assert grads_a.keys() == grads_b.keys()
    for name, want in grads_a.items():  # 1e-5 of the gradient's scale (sums differ in order)
        err = float((grads_b[name] - want).abs().max())
        assert err <= 1e-5 * max(float(want.abs().max()), 1.0), (name, err)


def test_candidate_ranking_trains_the_towers_only() -> None:
    model = _model()
    dense = model.dense
    user, item, ctx = _groups()
    _, _, cands = forward_with_candidates(dense.teacher, dense.student, user, item, ctx, R)
    assert not cands.teacher_pctcvr.requires_grad
    listwise_distill(cands.s_v, cands.teacher_pctcvr, 1.0).backward()
    for x in (user, item, ctx):  # no shared table moves
        assert x.grad is None or torch.count_nonzero(x.grad) == 0
    assert all(p.grad is None for p in dense.teacher.parameters())
    towers = [dense.student.user_tower, dense.student.conversion_tower]
    for tower in towers:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    assert all(p.grad is None for p in dense.student.click_tower.parameters())


def test_forward_twice_second_output_trains_the_weights_only() -> None:
    torch.manual_seed(0)
    mlp = MLP(6, [5, 4], out_dim=3)
    x = torch.randn(7, 6, requires_grad=True)
    full, frozen = mlp.forward_twice(x)
    torch.testing.assert_close(full, mlp(x))
    torch.testing.assert_close(frozen, mlp(x))
    (frozen**2).sum().backward()
    assert x.grad is None or torch.count_nonzero(x.grad) == 0
    got = {n: p.grad.clone() for n, p in mlp.named_parameters()}
    mlp.zero_grad()
    (mlp(x.detach()) ** 2).sum().backward()
    for n, p in mlp.named_parameters():
        torch.testing.assert_close(got[n], p.grad, msg=n)


@pytest.mark.parametrize("kind", TEACHERS)
def test_score_pairs_over_named_blocks_matches_the_concatenated_input(kind: str) -> None:
    """A per-pair block beside the item (as a user x item cross block will be): every pair
    scored from per-row and per-pair first-layer products equals the teacher on its input."""
    torch.manual_seed(1)
    widths = {"user": 5, "item": 4, "context": 3, "cross": 2}
    teacher = Teacher(widths, TeacherConfig(kind=kind, expert_dims=[8, 6], num_levels=2))
    g = torch.Generator().manual_seed(4)
    rows, pairs = 6, 3
    user, context = torch.randn(rows, 5, generator=g), torch.randn(rows, 3, generator=g)
    item, cross = torch.randn(pairs, rows, 4, generator=g), torch.randn(pairs, rows, 2, generator=g)
    out = teacher.score_pairs({"user": user, "context": context}, {"item": item, "cross": cross})
    assert out.pctcvr.shape == (pairs, rows)
    for p in range(pairs):
        want = teacher(torch.cat([user, item[p], context, cross[p]], dim=1))
        for got, w in zip(out, want, strict=True):
            torch.testing.assert_close(got[p], w, **TOL)
    with pytest.raises(KeyError, match="cross"):
        teacher.score_pairs({"user": user, "context": context}, {"item": item})
    with pytest.raises(KeyError, match="'hist'.*user, item, context, cross"):
        teacher.first_layer().partial({"hist": user})
    with pytest.raises(ValueError, match="'user' is 5 wide"):
        teacher.first_layer().partial({"user": context})


def test_pair_blocks_of_candidates_are_read_per_pair() -> None:
    """A teacher with a cross block: the impressions read `pair_blocks`, candidate r reads
    `candidate_pair_blocks[r - 1]`, and both scores equal the teacher on the concatenation."""
    dense = _model().dense
    torch.manual_seed(2)
    widths = {"user": 16, "item": 12, "context": 4, "cross": 3}
    teacher = Teacher(widths, TeacherConfig(expert_dims=[8], tower_dims=[4]))
    user, item, ctx = _groups(seed=5)
    n = len(candidate_shifts(B, R))
    g = torch.Generator().manual_seed(6)
    cross, cand_cross = torch.randn(B, 3, generator=g), torch.randn(n, B, 3, generator=g)
    t, _, c = forward_with_candidates(
        teacher, dense.student, user, item, ctx, R, {"cross": cross}, {"cross": cand_cross}
    )
    with torch.no_grad():
        own = teacher(torch.cat([user, item, ctx, cross], dim=1))
        torch.testing.assert_close(t.pctcvr.detach(), own.pctcvr, **TOL)
        for r in range(1, n + 1):
            x = torch.cat([user, item.roll(r, 0), ctx, cand_cross[r - 1]], dim=1)
            torch.testing.assert_close(c.teacher_pctcvr[:, r], teacher(x).pctcvr, **TOL)
    with pytest.raises(ValueError, match="every candidate pair"):
        forward_with_candidates(teacher, dense.student, user, item, ctx, R, {"cross": cross})


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
    assert float(a.losses["distill/ctcvr_rank"]) > 0
    assert "distill/ctcvr_rank" in a.weights and "distill/ctcvr_rank" not in b.losses
    # every other term, the pointwise distill/ctcvr included, is the same with and without
    for term in without.loss_terms:
        torch.testing.assert_close(a.losses[term], b.losses[term])


def test_small_batches_use_every_other_row_once() -> None:
    assert candidate_shifts(4, 8) == [1, 2, 3]
    assert candidate_shifts(32, 8) == list(range(1, 9))
    assert candidate_shifts(1, 8) == []
    model = _model()
    for batch in (1, 3):
        user, item, ctx = _groups(batch=batch)
        _, _, cands = forward_with_candidates(model.teacher, model.student, user, item, ctx, 8)
        assert cands.s_v.shape == cands.teacher_pctcvr.shape == (batch, batch)


def test_config_rejects_negative_candidates() -> None:
    with pytest.raises(ConfigError, match="model.loss.distill_candidates"):
        _config(loss={"distill_candidates": -1})
