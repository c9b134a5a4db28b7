"""The full DMMP model: the shared sparse layer, then one dense module with teacher, student,
loss terms and their weighting.

The top-level forward is two calls so that torch.fx (TrainPipelineSparseDist's tracer) sees the
EBC call `sparse.ebc(batch.features)` directly on the batch and everything dense as one leaf
module; `dense` holds no sharded module and is never traced into.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.model import DISTILL_TERMS, ModelConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.model.candidates import candidate_shifts, forward_with_candidates
from dmmp_rec.model.losses import compute_terms, terms_for
from dmmp_rec.model.sparse import SharedSparseArch
from dmmp_rec.model.student import Student
from dmmp_rec.model.teacher import Teacher
from dmmp_rec.model.weighting import build_weighting


class DenseArch(nn.Module):
    """Teacher, student and loss weighting over the pooled group embeddings."""

    def __init__(self, group_dims: dict[str, int], cfg: ModelConfig) -> None:
        super().__init__()
        self.variant = cfg.variant
        self.loss_cfg = cfg.loss
        self.has_context = group_dims.get("context", 0) > 0
        self.has_cross = group_dims.get("cross", 0) > 0  # pair features: the teacher's only
        user_dim = group_dims["user"] + group_dims.get("context", 0)
        # the teacher's input blocks in concatenation order; `cross` is the pair's only
        blocks = {g: group_dims.get(g, 0) for g in ("user", "item", "context", "cross")}
        self.teacher = Teacher({g: w for g, w in blocks.items() if w > 0}, cfg.teacher)
        self.student = Student(
            user_dim, group_dims["item"], group_dims["user"], cfg.student, cfg.variant
        )
        self.terms = terms_for(
            cfg.variant, cfg.student.in_batch_negatives, cfg.loss.distill_candidates > 0
        )
        self.weighting = build_weighting(self.terms, cfg.loss)
        ranks = "distill/ctcvr_rank" in self.terms
        self.num_candidates = cfg.loss.distill_candidates if ranks else 0
        # without distillation into the tables, the distillation terms read a second student
        # pass over detached embeddings (the towers still learn from the teacher)
        distills = any(t in DISTILL_TERMS for t in self.terms)
        self.detached_distill = distills and not cfg.loss.distill_to_tables
        # Training steps taken; drives the distillation warm-up and checkpoints with the model.
        self.register_buffer("train_step", torch.zeros((), dtype=torch.int64))

    def forward(
        self,
        groups: dict[str, torch.Tensor],
        click: torch.Tensor,
        conversion: torch.Tensor,
        item_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        user, item = groups["user"], groups["item"]
        context = groups["context"] if self.has_context else None
        cross = groups["cross"] if self.has_cross else None
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
            parts = [user, item] + [x for x in (context, cross) if x is not None]
            t = self.teacher(torch.cat(parts, dim=1))
            s = self.student(user, context, item)  # the student never reads `cross`
        s_distill = None
        if self.detached_distill:
            ctx = None if context is None else context.detach()
            s_distill = self.student(user.detach(), ctx, item.detach())
        losses = compute_terms(
            self.terms, t, s, click, conversion, item_ids, self.loss_cfg, candidates, s_distill
        )
        weighted = self.weighting(losses, self.train_step)
        if self.training:
            with torch.no_grad():
                self.train_step += 1
        outputs = {
            "pctr": t.pctr,
            "pcvr": t.pcvr,
            "pctcvr": t.pctcvr,
            "s_c": s.s_c,
            "s_v": s.s_v,
            "fused": s.fused,
            "gate": s.gate,
            "tau": s.tau,
        }
        outputs = {k: v.detach() for k, v in outputs.items()}
        outputs.update({f"loss/{k}": v.detach() for k, v in losses.items()})
        outputs.update({f"weight/{k}": v for k, v in weighted.weights.items()})
        outputs.update({f"scale/{k}": v for k, v in weighted.scales.items()})
        outputs["total_loss"] = weighted.loss  # the plain sum of the terms, >= 0
        outputs["objective"] = weighted.objective.detach()
        return weighted.objective, outputs


class DMMPModel(nn.Module):
    """DMMP or one of its baselines (`ModelConfig.variant`, `teacher.kind`).

    `forward(batch) -> (loss, outputs)` for training and evaluation; `query_vector`,
    `item_vector` and `user_gate` for retrieval, each from a KJT of one side's features.
    """

    def __init__(self, sparse: SharedSparseArch, dense: DenseArch, item_id_feature: str) -> None:
        super().__init__()
        self.sparse = sparse
        self.dense = dense
        self.item_id_feature = item_id_feature

    @property
    def teacher(self) -> Teacher:
        return self.dense.teacher

    @property
    def student(self) -> Student:
        return self.dense.student

    @property
    def train_step(self) -> torch.Tensor:
        return self.dense.train_step

    @property
    def vector_dim(self) -> int:
        return self.dense.student.vector_dim

    @property
    def loss_terms(self) -> tuple[str, ...]:
        return self.dense.terms

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        groups = self.sparse(batch.features)
        item_ids = None
        if "student/inbatch" in self.dense.terms:
            item_ids = batch.features[self.item_id_feature].values()
        return self.dense(groups, batch.click, batch.conversion, item_ids)

    def query_vector(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """[g'_c u, g'_v u] / tau ([B, vector_dim]) from user and context features, the gate
        shifted by the serving knob `beta` (0 = as trained)."""
        g = self.sparse.lookup(features, ("user", "context"))
        return self.dense.student.query_vector(g["user"], g.get("context"), beta)

    def query_parts(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u / tau [B, d], gate logit z [B]): a query at any beta is
        `student.compose_query(u / tau, z, beta)` (one encoding serves a whole beta grid)."""
        g = self.sparse.lookup(features, ("user", "context"))
        return self.dense.student.query_parts(g["user"], g.get("context"))

    def item_vector(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """[i_c, i_v] ([B, vector_dim]) from item features; its inner product with
        `query_vector` is the fused score."""
        g = self.sparse.lookup(features, ("item",))
        return self.dense.student.item_vector(g["item"])

    def user_gate(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """[B, 2] (click, conversion) preferences from user features, shifted by `beta`."""
        g = self.sparse.lookup(features, ("user",))
        return self.dense.student.gate(g["user"], beta)
