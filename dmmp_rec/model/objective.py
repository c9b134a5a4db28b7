"""The training objective: scoring plus in-batch candidates, loss terms, their weighting and the
step counter. Only training calls it; scoring alone is `DenseScorer.score`."""

from __future__ import annotations

import torch

from dmmp_rec.config.model import DISTILL_TERMS, ModelConfig
from dmmp_rec.model.candidates import Candidates, candidate_shifts, forward_with_candidates
from dmmp_rec.model.losses import compute_terms, terms_for
from dmmp_rec.model.output import DMMPOutput, TrainOutput
from dmmp_rec.model.precision import as_float32, dense_autocast
from dmmp_rec.model.scoring import DenseScorer
from dmmp_rec.model.student import StudentOutput
from dmmp_rec.model.teacher import TeacherOutput
from dmmp_rec.model.weighting import build_weighting
from dmmp_rec.model.weighting_base import LossReducer


class DenseArch(DenseScorer):
    """Teacher, student and loss weighting over the pooled group embeddings.

    `forward` is one training step's objective. A subclass of the scorer (not a wrapper) so that
    the state keeps its paths: `dense.teacher`, `dense.student`, `dense.weighting`,
    `dense.train_step`.

    Args:
        group_dims (dict[str, int]): width of each group's pooled embeddings ("user", "item",
            and "context" / "cross" when the features have them).
        cfg (ModelConfig): the model section (variant, teacher, student, loss).
        reduce_losses (LossReducer | None): averages a detached loss vector over the ranks, for
            the weighting's statistics (`rank_mean` under DMP); None: one process.
    """

    train_step: torch.Tensor  # buffer

    def __init__(
        self,
        group_dims: dict[str, int],
        cfg: ModelConfig,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__(group_dims, cfg)
        self.loss_cfg = cfg.loss
        self.terms = terms_for(
            cfg.variant,
            cfg.student.in_batch_negatives,
            cfg.loss.distill_candidates > 0,
            cfg.student.gate_training,
        )
        self.weighting = build_weighting(self.terms, cfg.loss, reduce_losses)
        ranks = "distill/ctcvr_rank" in self.terms
        self.num_candidates = cfg.loss.distill_candidates if ranks else 0
        self.split_first_layer = self.num_candidates > 0  # score as the candidates path does
        # without distillation into the tables, the distillation terms read a second student
        # pass over detached embeddings (the towers still learn from the teacher)
        distills = any(t in DISTILL_TERMS for t in self.terms)
        self.detached_distill = distills and not cfg.loss.distill_to_tables
        # Training steps taken; drives the distillation warm-up and checkpoints with the model.
        self.register_buffer("train_step", torch.zeros((), dtype=torch.int64))
        # train.precision: the networks' autocast dtype in `forward` (None: fp32); set by
        # build_model. Losses are computed in fp32 either way (model/precision.py).
        self.autocast_dtype: torch.dtype | None = None

    def forward(
        self,
        groups: dict[str, torch.Tensor],
        click: torch.Tensor,
        conversion: torch.Tensor,
        item_ids: torch.Tensor | None,
        clicked_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, TrainOutput]:
        """One training step's objective: scores, loss terms and their weighting; counts the step.

        Networks run under train.precision's autocast, losses in fp32. In training mode the
        `train_step` buffer advances by one.

        Args:
            groups (dict[str, torch.Tensor]): pooled embeddings by feature group: "user", "item"
                ([B, width] each), "context" and "cross" when the model has them, and "cross@r"
                ([B, width], the cross features of each candidate pair r) when candidates are on.
            click (torch.Tensor): 0/1 click labels, [B].
            conversion (torch.Tensor): 0/1 conversion labels, [B].
            item_ids (torch.Tensor | None): each row's item id, [B]; needed by student/inbatch.
            clicked_rows (torch.Tensor | None): the clicked rows' indices, [P], found on the host
                (`Batch.clicked_rows`); None: the in-batch softmax uses its [B, B] form.

        Returns:
            tuple[torch.Tensor, TrainOutput]: the scalar objective the optimiser minimises (with
            gradient), and the step's detached scores, losses, weights and scales.
        """
        with dense_autocast(groups["user"].device.type, self.autocast_dtype):
            networks = self._networks(groups)
        t, s, candidates, s_distill = as_float32(networks)  # losses in fp32 (precision.py)
        losses = compute_terms(
            self.terms,
            t,
            s,
            click,
            conversion,
            item_ids,
            self.loss_cfg,
            candidates,
            s_distill,
            clicked_rows,
        )
        weighted = self.weighting(losses, self.train_step)
        if self.training:
            with torch.no_grad():
                self.train_step += 1
        out = TrainOutput(
            scores=DMMPOutput.from_parts(t, s).detach(),
            losses={k: v.detach() for k, v in losses.items()},
            weights=dict(weighted.weights),
            scales=dict(weighted.scales),
            total_loss=weighted.loss,
            objective=weighted.objective.detach(),
        )
        return weighted.objective, out

    def _networks(
        self, groups: dict[str, torch.Tensor]
    ) -> tuple[TeacherOutput, StudentOutput, Candidates | None, StudentOutput | None]:
        """Teacher and student on the impressions (and their in-batch candidates), plus the
        student over detached embeddings for the distillation terms when it needs one."""
        user, item, context, cross = self.blocks(groups)
        candidates = None
        if self.num_candidates > 0:
            pair, pair_candidates = None, None
            if cross is not None:  # the loader's cross features of every candidate pair
                shifts = candidate_shifts(user.shape[0], self.num_candidates)
                pair = {"cross": cross}
                pair_candidates = {"cross": torch.stack([groups[f"cross@{r}"] for r in shifts])}
            t, s, candidates = forward_with_candidates(
                self.teacher,
                self.student,
                user,
                item,
                context,
                self.num_candidates,
                pair,
                pair_candidates,
            )
        else:
            t, s = self.teacher_and_student(groups)
        s_distill = None
        if self.detached_distill:
            ctx = None if context is None else context.detach()
            s_distill = self.student(user.detach(), ctx, item.detach())
        return t, s, candidates, s_distill
