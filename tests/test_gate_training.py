"""What trains the gate (model.student.gate_training): the fused terms, or the teacher's pCVR."""

from __future__ import annotations

import math

import pytest
import torch
from model_support import _batch, _model

from dmmp_rec.config.model import LOSS_TERMS
from dmmp_rec.model.gate_targets import GATE_TERM, gate_logit_of, gate_loss, teacher_cvr_target


def _only(term: str) -> dict[str, float]:
    return {t: (1.0 if t == term else 0.0) for t in LOSS_TERMS}


def _grads(module: torch.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def test_gate_term_only_for_a_learned_gate_on_the_teacher_cvr() -> None:
    assert GATE_TERM not in _model().loss_terms  # fused: the default
    assert GATE_TERM in _model(student={"gate_training": "teacher_cvr"}).loss_terms
    for variant in ("no_gate", "no_distill", "two_tower"):
        model = _model(variant=variant, student={"gate_training": "teacher_cvr"})
        assert GATE_TERM not in model.loss_terms, variant


def test_target_is_the_centred_log_pcvr() -> None:
    pcvr = torch.tensor([0.01, 0.02, 0.04, 0.08])
    target = teacher_cvr_target(pcvr)
    # slope 1 in log pCVR: doubling pCVR adds log 2 to the gate logit; mean 0
    torch.testing.assert_close(target[1:] - target[:-1], torch.full((3,), math.log(2.0)))
    assert float(target.mean()) == pytest.approx(0.0, abs=1e-6)
    gate = torch.stack([torch.sigmoid(-target), torch.sigmoid(target)], dim=1)
    torch.testing.assert_close(gate_logit_of(gate), target, rtol=1e-4, atol=1e-4)
    assert float(gate_loss(gate, pcvr)) == pytest.approx(0.0, abs=1e-6)


def test_teacher_cvr_gate_learns_only_from_its_target_and_never_moves_the_teacher() -> None:
    cfg = {"gate_training": "teacher_cvr"}
    model = _model(student=cfg, loss={"weighting": "fixed", "fixed_weights": _only(GATE_TERM)})
    loss, out = model(_batch())
    assert float(out.losses[GATE_TERM]) > 0
    loss.backward()
    assert _grads(model.student.gate_net) > 0
    assert _grads(model.teacher) == 0.0
    for tower in ("user_tower", "click_tower", "conversion_tower"):
        assert _grads(getattr(model.student, tower)) == 0.0, tower
    # the fused terms see the gate detached: they train the towers, not the gate
    for term in ("student/fused", "distill/fused"):
        model = _model(student=cfg, loss={"weighting": "fixed", "fixed_weights": _only(term)})
        model(_batch())[0].backward()
        assert _grads(model.student.gate_net) == 0.0, term
        assert _grads(model.student.user_tower) > 0, term


def test_fused_gate_learns_from_the_fused_terms() -> None:
    model = _model(loss={"weighting": "fixed", "fixed_weights": _only("student/fused")})
    model(_batch())[0].backward()
    assert _grads(model.student.gate_net) > 0
