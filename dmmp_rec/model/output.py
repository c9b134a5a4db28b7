"""Typed results of the model: what scoring returns, and what a training step adds to it.

Scoring (evaluation, validation, serving checks) needs only the teacher's and the student's
scores; the loss terms, their weights and the in-batch candidates belong to training alone
(as torchrec splits DLRM, which scores, from DLRMTrain, which owns the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from dmmp_rec.model.student import StudentOutput
from dmmp_rec.model.teacher import TeacherOutput


@dataclass
class DMMPOutput:
    """Per-row scores of one batch: the teacher's ESMM heads and the student's three towers."""

    logit_ctr: torch.Tensor  # [B] teacher
    logit_cvr: torch.Tensor  # [B] teacher
    pctr: torch.Tensor  # [B] teacher
    pcvr: torch.Tensor  # [B] teacher
    pctcvr: torch.Tensor  # [B] teacher, pctr * pcvr
    s_c: torch.Tensor  # [B] student click score (logit)
    s_v: torch.Tensor  # [B] student conversion score; the click score for the two-tower
    fused: torch.Tensor  # [B] gate-weighted retrieval score
    gate: torch.Tensor  # [B, 2] (click, conversion) preference of each row's user
    tau: torch.Tensor  # scalar temperature of the student's scores

    # the per-row scores evaluation keeps (gate and tau are per user / per model)
    ROW_SCORES: ClassVar[tuple[str, ...]] = ("pctr", "pcvr", "pctcvr", "s_c", "s_v", "fused")

    @classmethod
    def from_parts(cls, teacher: TeacherOutput, student: StudentOutput) -> DMMPOutput:
        """The scores of one batch from the teacher's and the student's outputs (no copy).

        Args:
            teacher (TeacherOutput): the teacher on the batch.
            student (StudentOutput): the student on the same batch.

        Returns:
            DMMPOutput: their tensors, by name.
        """
        return cls(
            teacher.logit_ctr,
            teacher.logit_cvr,
            teacher.pctr,
            teacher.pcvr,
            teacher.pctcvr,
            student.s_c,
            student.s_v,
            student.fused,
            student.gate,
            student.tau,
        )

    def detach(self) -> DMMPOutput:
        """The same scores without gradient (what a training step keeps for logging).

        Returns:
            DMMPOutput: every field detached.
        """
        return DMMPOutput(*(getattr(self, f.name).detach() for f in fields(self)))

    def row_scores(self) -> dict[str, torch.Tensor]:
        """The per-row scores by name, for metrics that take any of them.

        Returns:
            dict[str, torch.Tensor]: ROW_SCORES name -> [B] tensor.
        """
        return {name: getattr(self, name) for name in self.ROW_SCORES}


@dataclass
class TrainOutput:
    """A training step's scores (detached) and its loss terms, weights and scales by term."""

    scores: DMMPOutput
    losses: dict[str, torch.Tensor]  # detached value of each loss term
    weights: dict[str, torch.Tensor]  # effective weight of each term (warm-up included)
    scales: dict[str, torch.Tensor]  # running scale of each term (anchored weighting only)
    total_loss: torch.Tensor  # the plain sum of the terms, >= 0 (what the progress bar shows)
    objective: torch.Tensor  # detached; what the optimiser minimises

    def scalars(self) -> dict[str, float]:
        """Everything the trainer logs, under the names TensorBoard and summary.json use.

        Each value is read to the host (float()): call it on logging steps only.

        Returns:
            dict[str, float]: loss/<term>, weight/<term>, scale/<term>, loss/total, loss/objective
            and gate/conversion_mean (the batch's mean conversion gate).
        """
        out = {f"loss/{k}": float(v) for k, v in self.losses.items()}
        out.update({f"weight/{k}": float(v) for k, v in self.weights.items()})
        out.update({f"scale/{k}": float(v) for k, v in self.scales.items()})
        out["loss/total"] = float(self.total_loss)
        out["loss/objective"] = float(self.objective)
        out["gate/conversion_mean"] = float(self.scores.gate[:, -1].float().mean())
        return out
