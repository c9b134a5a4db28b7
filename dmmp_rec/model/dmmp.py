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

    Args:
        sparse (SharedSparseArch): the embedding tables teacher and student share (sharded by
            DistributedModelParallel).
        dense (DenseArch): the teacher, the student and the training objective (losses and
            their weighting).
        item_id_feature (str): the item-id feature; the in-batch softmax reads its ids (a
            column holding the row's own item is not a negative; each item's in-batch
            frequency corrects its logit).
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
        """One training step's objective (what TrainPipelineSparseDist runs).

        Args:
            batch: a training batch (features, click and conversion labels, clicked rows).

        Returns:
            (objective to minimise, TrainOutput with the scores, loss terms and weights).
        """
        groups = self.sparse(batch.features)
        item_ids = None
        if "student/inbatch" in self.dense.terms:
            item_ids = batch.features[self.item_id_feature].values()
        return self.dense(groups, batch.click, batch.conversion, item_ids, batch.clicked_rows)

    def score(self, batch: Batch) -> DMMPOutput:
        """Teacher and student scores of every row, nothing trained or counted.

        On a DMP call it on `dmp.module` (the sharded EBC runs its input and output distribution
        itself).

        Args:
            batch: a batch of impressions (labels are not read).

        Returns:
            DMMPOutput: the teacher's and the student's scores, without candidates or losses.
        """
        return self.dense.score(self.sparse(batch.features))

    def query_vector(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """The user's query vector [g'_c u, g'_v u] / tau for retrieval.

        Args:
            features: a KJT of the user and context features.
            beta: the serving knob that shifts the gate (0 = as trained).

        Returns:
            [B, vector_dim] query vectors.
        """
        g = self.sparse.lookup(features, ("user", "context"))
        return self.dense.student.query_vector(g["user"], g.get("context"), beta)

    def query_parts(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts a query at any beta is composed from (one encoding serves a beta grid).

        A query is `student.compose_query(u / tau, z, beta)`.

        Args:
            features: a KJT of the user and context features.

        Returns:
            (u / tau [B, d], gate logit z [B]).
        """
        g = self.sparse.lookup(features, ("user", "context"))
        return self.dense.student.query_parts(g["user"], g.get("context"))

    def item_vector(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """The item vector [i_c, i_v]; its inner product with `query_vector` is the fused score.

        Args:
            features: a KJT of the item features.

        Returns:
            [B, vector_dim] item vectors.
        """
        g = self.sparse.lookup(features, ("item",))
        return self.dense.student.item_vector(g["item"])

    def user_gate(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """The user's (click, conversion) preferences from the gate.

        Args:
            features: a KJT of the user features.
            beta: the serving knob that shifts the gate (0 = as trained).

        Returns:
            [B, 2] gate weights (click, conversion).
        """
        g = self.sparse.lookup(features, ("user",))
        return self.dense.student.gate(g["user"], beta)
