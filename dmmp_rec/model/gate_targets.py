"""What trains the student's per-user gate (`model.student.gate_training`).

- `fused` (DMMP as first built): the gate learns only through the fused score's terms
  (student/fused, distill/fused), like every other weight.
- `teacher_cvr`: the gate is supervised by the teacher's view of the user's conversion
  propensity, and the fused terms see it detached. Why this target: a list ranked by
  value = pCTR + lambda * pCTCVR = pCTR (1 + lambda pCVR) has, in log space,
  log value ~ log pCTR + w log pCVR with w = lambda pCVR / (1 + lambda pCVR), i.e. the fused
  score (1 - w) s_c + w s_v with s_c ~ log pCTR, s_v ~ log pCTCVR. The conversion gate
  g_v = sigmoid(z) equals w when z = log(lambda) + log(pCVR): users should differ in z exactly
  as they differ in log pCVR (slope 1), and log(lambda), shared by every user, is the serving
  knob's job. The term `distill/gate` regresses z on the teacher's log pCVR of each impression
  less its batch mean (over a user's impressions: the user's mean log pCVR, centred), so the
  trained gate sits mid-frontier at beta = 0 like the fused design's and the knob's grid
  covers both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GATE_TERM = "distill/gate"
_EPS = 1e-6


def gate_logit_of(gate: torch.Tensor) -> torch.Tensor:
    """The conversion-minus-click logit z = log g_v - log g_c of each row's gate.

    Args:
        gate (torch.Tensor): the student's (g_c, g_v) gate, [B, 2]; clamped at 1e-6 before
            the log.

    Returns:
        torch.Tensor: z, [B].
    """
    g = gate.clamp(min=_EPS)
    return torch.log(g[:, 1]) - torch.log(g[:, 0])


def teacher_cvr_target(teacher_pcvr: torch.Tensor) -> torch.Tensor:
    """The gate logit the teacher's pCVR asks for: log pCVR less its batch mean (detached).

    Args:
        teacher_pcvr (torch.Tensor): the teacher's pCVR of each impression, [B]; clamped at
            1e-6 before the log.

    Returns:
        torch.Tensor: the target z of each row, [B], centred over the batch, without gradient.
    """
    log_p = torch.log(teacher_pcvr.detach().clamp(min=_EPS))
    return log_p - log_p.mean()


def gate_loss(gate: torch.Tensor, teacher_pcvr: torch.Tensor) -> torch.Tensor:
    """The `distill/gate` term: mean squared error of the gate logit against `teacher_cvr_target`.

    Args:
        gate (torch.Tensor): the student's (g_c, g_v) gate, [B, 2].
        teacher_pcvr (torch.Tensor): the teacher's pCVR of each impression, [B].

    Returns:
        torch.Tensor: a scalar loss; its gradient reaches the gate only.
    """
    return F.mse_loss(gate_logit_of(gate), teacher_cvr_target(teacher_pcvr))
