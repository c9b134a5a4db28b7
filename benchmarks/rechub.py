"""torch-rechub 0.9.0 (the library a user would pick instead) on DMMP's features and dims.

Its PLE (the same expert layout as our teacher) is trained with entire-space ESMM losses
(pCTCVR = pCTR * pCVR over all impressions); its DSSM with its point-wise click loss. Inputs are
rechub's own format: a LongTensor per single-valued feature and a padded [B, L] LongTensor per
multi-valued one (padding id = cardinality, masked by rechub). Optimiser: Adam over every
parameter, as rechub's trainers do (its embeddings are dense nn.Embedding tables).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.matching import DSSM
from torch_rechub.models.multi_task import PLE

from dmmp_rec.config import DmmpConfig
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.batch import Batch

Kind = Literal["ple_esmm", "dssm"]


def _feature(spec: FeatureSpec) -> SparseFeature | SequenceFeature:
    if spec.multi_valued:
        return SequenceFeature(
            spec.name,
            vocab_size=spec.cardinality + 1,
            embed_dim=spec.dim,
            pooling=spec.pooling,
            padding_idx=spec.cardinality,
        )
    return SparseFeature(spec.name, vocab_size=spec.cardinality, embed_dim=spec.dim)


class RechubBatch:
    """A Batch in rechub's input format (padded history lists)."""

    def __init__(self, batch: Batch, cfg: DmmpConfig) -> None:
        jts = batch.features.to_dict()
        self.x: dict[str, torch.Tensor] = {}
        for spec in cfg.features.all:
            jt = jts[spec.name]
            if spec.multi_valued:
                dense = jt.to_padded_dense(padding_value=spec.cardinality)
                self.x[spec.name] = dense.long()
            else:
                self.x[spec.name] = jt.values().long()
        self.click = batch.click
        self.conversion = batch.conversion
        self.size = batch.size


class RechubModel(nn.Module):
    """`forward(batch) -> (loss, outputs)` around rechub's PLE (ESMM losses) or DSSM."""

    def __init__(self, cfg: DmmpConfig, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        feats = cfg.features
        user = [_feature(s) for s in feats.group("user") + feats.group("context")]
        item = [_feature(s) for s in feats.group("item")]
        t, s = cfg.model.teacher, cfg.model.student
        if kind == "ple_esmm":
            self.net = PLE(
                user + item,
                task_types=["classification", "classification"],
                n_level=t.num_levels,
                n_expert_specific=t.task_experts,
                n_expert_shared=t.shared_experts,
                expert_params={"dims": list(t.expert_dims)},
                tower_params_list=[{"dims": list(t.tower_dims)}] * 2,
            )
        elif kind == "dssm":
            dims = list(s.tower_dims) + [s.out_dim]
            self.net = DSSM(user, item, user_params={"dims": dims}, item_params={"dims": dims})
        else:
            raise ValueError(f"unknown rechub model {kind!r}")

    def forward(self, batch: RechubBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y = self.net(batch.x)
        if self.kind == "ple_esmm":
            pctr, pcvr = y[:, 0], y[:, 1]
            pctcvr = pctr * pcvr
            loss = F.binary_cross_entropy(pctr, batch.click) + F.binary_cross_entropy(
                pctcvr, batch.click * batch.conversion
            )
            return loss, {"pctr": pctr.detach(), "pctcvr": pctcvr.detach()}
        loss = F.binary_cross_entropy(y, batch.click)
        return loss, {"score": y.detach()}


def rechub_optimizer(model: nn.Module, cfg: DmmpConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.train.dense_lr)
