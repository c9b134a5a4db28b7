"""A plain-PyTorch replica of DMMP: the same dense math, embeddings without torchrec.

Every feature gets an `nn.EmbeddingBag(sparse=True)` (pooled like the EBC), trained by
`torch.optim.Adagrad` on sparse gradients; the dense part is DMMP's own `DenseArch` (teacher,
student, losses, weighting) trained by AdamW; several processes use DDP over gloo with the
tables replicated. Comparing it with the torchrec model on the same batches isolates what
torchrec (sharded fused kernels, fused in-backward optimiser, input distribution) buys us.
"""

from __future__ import annotations

import torch
from torch import nn

from dmmp_rec.config import DmmpConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.output import TrainOutput


class ReplicaBatch:
    """One batch as per-feature (values, offsets) pairs, the input EmbeddingBag wants."""

    def __init__(self, batch: Batch, names: list[str]) -> None:
        jts = batch.features.to_dict()
        self.inputs = {n: (jts[n].values().long(), jts[n].offsets().long()) for n in names}
        self.click = batch.click
        self.conversion = batch.conversion
        self.size = batch.size


class ReplicaModel(nn.Module):
    """`forward(batch) -> (loss, outputs)` like DMMPModel, with plain EmbeddingBags."""

    def __init__(self, cfg: DmmpConfig) -> None:
        super().__init__()
        feats = cfg.features
        self.groups = {g: [s.name for s in feats.group(g)] for g in ("user", "item", "context")}
        self.groups = {g: names for g, names in self.groups.items() if names}
        self.tables = nn.ModuleDict(
            {
                s.name: nn.EmbeddingBag(
                    s.cardinality, s.dim, mode=s.pooling, sparse=True, include_last_offset=True
                )
                for s in feats.all
            }
        )
        for table in self.tables.values():
            nn.init.uniform_(table.weight, -0.01, 0.01)
        dims = {g: feats.group_dim(g) for g in self.groups}
        self.dense = DenseArch(dims, cfg.model)
        self.item_id_feature = feats.group("item")[0].name
        self.uses_item_ids = "student/inbatch" in self.dense.terms

    def forward(self, batch: ReplicaBatch) -> tuple[torch.Tensor, TrainOutput]:
        pooled = {n: self.tables[n](v, o) for n, (v, o) in batch.inputs.items()}
        groups = {g: torch.cat([pooled[n] for n in names], 1) for g, names in self.groups.items()}
        item_ids = batch.inputs[self.item_id_feature][0] if self.uses_item_ids else None
        return self.dense(groups, batch.click, batch.conversion, item_ids)


def replica_optimizers(
    model: nn.Module, cfg: DmmpConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Sparse Adagrad for the tables, AdamW for everything else (as DMMP's trainer splits it)."""
    sparse = [p for n, p in model.named_parameters() if ".tables." in f".{n}"]
    dense = [p for n, p in model.named_parameters() if ".tables." not in f".{n}"]
    return (
        torch.optim.Adagrad(sparse, lr=cfg.train.embedding_lr),
        torch.optim.AdamW(
            dense, lr=cfg.train.dense_lr, weight_decay=cfg.train.weight_decay, fused=True
        ),
    )
