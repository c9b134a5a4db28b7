"""The full DMMP model: the shared sparse layer, then one dense module with teacher, student,
loss terms and their weighting (`objective.DenseArch`).

`forward(batch)` is the training step (what TrainPipelineSparseDist runs); `score(batch)` is the
scoring forward, a typed `DMMPOutput` without candidates or losses, for everything else.

The top-level forward is two calls so that torch.fx (TrainPipelineSparseDist's tracer) sees the
EBC call `sparse.ebc(batch.features)` directly on the batch and everything dense as one leaf
module; `dense` holds no sharded module and is never traced into.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.data.batch import Batch
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.output import DMMPOutput, TrainOutput
from dmmp_rec.model.sparse import SharedSparseArch
from dmmp_rec.model.student import Student
from dmmp_rec.model.teacher import Teacher


class DMMPModel(nn.Module):
    """DMMP or one of its baselines (`ModelConfig.variant`, `teacher.kind`).

    `forward(batch) -> (objective, TrainOutput)` for training; `score(batch) -> DMMPOutput` for
    evaluation; `query_vector`, `item_vector` and `user_gate` for retrieval, each from a KJT of
    one side's features.
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

    def forward(self, batch: Batch) -> tuple[torch.Tensor, TrainOutput]:
        groups = self.sparse(batch.features)
        item_ids = None
        if "student/inbatch" in self.dense.terms:
            item_ids = batch.features[self.item_id_feature].values()
        return self.dense(groups, batch.click, batch.conversion, item_ids, batch.clicked_rows)

    def score(self, batch: Batch) -> DMMPOutput:
        """Teacher and student scores of every row, nothing trained or counted. On a DMP call it
        on `dmp.module` (the sharded EBC runs its input and output distribution itself)."""
        return self.dense.score(self.sparse(batch.features))

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
