"""Loss weighting and the distillation warm-up: adaptive weights move, the anchored and scaled
forms settle, fixed weights stay, the step counter checkpoints (split from test_model.py)."""

from __future__ import annotations

import math

import pytest
import torch
from model_support import _batch, _config, _model

from dmmp_rec.config.model import DISTILL_TERMS
from dmmp_rec.model import DMMPModel, build_model


def _train(model: DMMPModel, steps: int, lr: float = 1e-2) -> list[dict[str, torch.Tensor]]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(steps):
        loss, out = model(_batch(seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(out)
    return history


@pytest.mark.parametrize("scheme", ["uncertainty", "dwa"])
def test_adaptive_weighting_moves_its_weights(scheme: str) -> None:
    model = _model(loss={"weighting": scheme, "dwa_window": 2}).train()
    history = _train(model, 8)
    for term in model.loss_terms:
        first, last = history[0].weights[term], history[-1].weights[term]
        assert float(first) == pytest.approx(1.0), term
        assert abs(float(last) - float(first)) > 1e-3, term


def _weights_after(scheme: str, steps: int) -> list[dict[str, float]]:
    """Per-step weights when only the weighting learns, on stationary losses of very
    different scales (the model frozen at its initialisation)."""
    torch.manual_seed(0)
    model = _model(loss={"weighting": scheme}).train()
    for p in model.parameters():
        p.requires_grad_(False)
    log_vars = model.dense.weighting.log_vars
    log_vars.requires_grad_(True)
    opt = torch.optim.Adam([log_vars], lr=1e-2)
    history = []
    for step in range(steps):
        loss, out = model(_batch(seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({t: float(out.weights[t]) for t in model.loss_terms})
    return history


def test_scaled_weights_settle_where_kendalls_keep_moving() -> None:
    # the check, scaled down: the largest relative change of any weight between
    # half-way and the end of the run
    def largest_change(history: list[dict[str, float]]) -> float:
        mid, end = history[len(history) // 2 - 1], history[-1]
        return max(abs(end[t] / mid[t] - 1) for t in end)

    kendall = _weights_after("uncertainty", 400)
    assert largest_change(kendall) > 0.15  # chasing 1 / L_k at the optimiser's pace
    for scheme in ("anchored", "scaled"):
        settled = _weights_after(scheme, 400)
        assert largest_change(settled) < 0.15, scheme
        assert max(settled[-1].values()) < 1.5 and min(settled[-1].values()) > 0.67, scheme


def test_anchored_weights_keep_the_raw_balance_of_the_terms() -> None:
    # at equal log-weights the anchored objective's gradient is the fixed-weight one; the
    # scaled form's divides each term by its running scale
    grads = {}
    for scheme in ("anchored", "fixed", "scaled"):
        model = _model(loss={"weighting": scheme}).train()
        objective, _ = model(_batch(seed=4))
        objective.backward()
        grads[scheme] = model.student.click_tower.net[0].weight.grad.clone()
    torch.testing.assert_close(grads["anchored"], grads["fixed"])
    assert not torch.allclose(grads["scaled"], grads["fixed"])


def test_watched_loss_is_the_plain_sum_and_the_scales_are_reported() -> None:
    model = _model(loss={"weighting": "scaled"}).train()
    history = _train(model, 3)
    for out in history:
        terms = sum(float(out.losses[t]) for t in model.loss_terms)
        assert float(out.total_loss) == pytest.approx(terms, rel=1e-5)
        for term in model.loss_terms:
            assert float(out.scales[term]) > 0
    # the running scale of a term is its mean loss (first step: the loss itself)
    first = history[0]
    for term in model.loss_terms:
        assert float(first.scales[term]) == pytest.approx(float(first.losses[term]))
    kendall = _model(loss={"weighting": "uncertainty"}).train()
    with torch.no_grad():
        kendall.dense.weighting.log_vars.fill_(3.0)  # weights e^-3: the objective moves ...
    objective, out = kendall(_batch())
    plain = sum(float(out.losses[t]) for t in kendall.loss_terms)
    assert float(objective) == pytest.approx(
        sum(math.exp(-3) * float(out.losses[t]) + 3.0 for t in kendall.loss_terms), rel=1e-5
    )
    assert float(out.total_loss) == pytest.approx(plain, rel=1e-5)  # ... the watched loss not


def test_distillation_kept_out_of_the_tables_leaves_their_gradients_as_without_it() -> None:
    only_hard = {t: 0.0 for t in DISTILL_TERMS}
    runs = {}
    for name, loss in (
        ("stopped", {"weighting": "fixed", "distill_to_tables": False}),
        ("no_distill_weight", {"weighting": "fixed", "fixed_weights": only_hard}),
        ("into_tables", {"weighting": "fixed"}),
    ):
        model = _model(loss=loss).train()
        objective, out = model(_batch(seed=3))
        objective.backward()
        runs[name] = (model, out)
    tables = {
        n: p.grad.clone()
        for n, p in runs["stopped"][0].sparse.named_parameters()
        if p.grad is not None
    }
    assert tables
    for n, p in runs["no_distill_weight"][0].sparse.named_parameters():
        if n in tables:
            torch.testing.assert_close(tables[n], p.grad, rtol=1e-5, atol=1e-7)
    into = dict(runs["into_tables"][0].sparse.named_parameters())
    assert any(not torch.allclose(tables[n], into[n].grad) for n in tables)
    # the distillation terms still train the student towers
    stopped = runs["stopped"][0]
    for term in (t for t in DISTILL_TERMS if t in stopped.loss_terms):
        assert float(runs["stopped"][1].losses[term]) > 0
    assert all(p.grad is not None for p in stopped.student.parameters())


def test_fixed_weights_stay_as_configured() -> None:
    model = _model(loss={"weighting": "fixed", "fixed_weights": {"student/fused": 0.5}})
    history = _train(model, 3)
    assert all(float(h.weights["student/fused"]) == 0.5 for h in history)
    assert all(float(h.weights["teacher/ctr"]) == 1.0 for h in history)


@pytest.mark.parametrize("scheme", ["anchored", "scaled", "uncertainty", "fixed", "dwa"])
def test_warmup_holds_distillation_weight_at_start(scheme: str) -> None:
    loss = {
        "weighting": scheme,
        "distill_warmup_steps": 4,
        "distill_warmup_start": 0.25,
        "distill_ramp_steps": 2,
        "dwa_window": 100,  # DWA weights stay 1 here, so the multiplier shows alone
    }
    model = _model(loss=loss).train()
    history = _train(model, 7)
    # held at the start value for 4 steps, half-way up the 2-step ramp at step 4, then full
    expected = [0.25, 0.25, 0.25, 0.25, 0.625, 1.0, 1.0]
    # the uncertainty forms multiply by exp(-s_k), whose s_k moves by about lr per step
    tol = 0.08 if scheme in ("uncertainty", "scaled", "anchored") else 1e-6
    for step, out in enumerate(history):
        for term in (t for t in DISTILL_TERMS if t in model.loss_terms):
            w = float(out.weights[term])
            assert w == pytest.approx(expected[step], rel=tol), (step, term)
    assert int(model.train_step) == 7


def test_train_step_is_checkpointed_and_eval_does_not_advance_it() -> None:
    model = _model().train()
    _train(model, 3)
    model.eval()
    with torch.no_grad():
        model(_batch())
    state = model.state_dict()
    assert int(state["dense.train_step"]) == 3
    other = _model(seed=1)
    other.load_state_dict(state)
    assert int(other.train_step) == 3


@pytest.mark.parametrize("scheme", ["scaled", "anchored", "dwa"])
def test_the_loss_reducer_given_at_build_time_feeds_the_statistics(scheme: str) -> None:
    """`build_model(reduce_losses=...)` reaches the weighting (as DMP's rank mean does): its
    statistics come from what the reducer returns, not from this process's own losses."""
    seen: list[torch.Tensor] = []

    def twice(values: torch.Tensor) -> torch.Tensor:
        seen.append(values.detach().clone())
        return 2 * values.detach()

    torch.manual_seed(0)
    cfg = _config(loss={"weighting": scheme, "dwa_window": 1})
    alone = build_model(cfg).train()
    torch.manual_seed(0)
    reduced = build_model(cfg, reduce_losses=twice).train()
    _, out = reduced(_batch(seed=3))
    alone(_batch(seed=3))
    assert len(seen) == 1 and seen[0].shape == (len(reduced.loss_terms),)
    if scheme == "dwa":
        stats = (reduced.dense.weighting.last_mean, alone.dense.weighting.last_mean)
    else:
        stats = (reduced.dense.weighting.scale, alone.dense.weighting.scale)
        assert [float(out.scales[t]) for t in reduced.loss_terms] == stats[0].tolist()
    torch.testing.assert_close(stats[0], 2 * stats[1])
    torch.testing.assert_close(stats[1], seen[0])  # one process: its own losses
