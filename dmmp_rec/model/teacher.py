"""The teacher: a multi-task ranker with entire-space (ESMM) CTR and CVR heads.

pCTCVR = pCTR * pCVR is trained on every impression, so CVR is learned over the entire space
instead of on clicked rows alone; pCTCVR <= pCTR holds by construction.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dmmp_rec.config.model import TeacherConfig
from dmmp_rec.model.experts import PLE, MMoE, SharedBottom
from dmmp_rec.model.mlp import MLP


class TeacherOutput(NamedTuple):
    logit_ctr: torch.Tensor  # [B]
    logit_cvr: torch.Tensor  # [B]
    pctr: torch.Tensor  # [B]
    pcvr: torch.Tensor  # [B]
    pctcvr: torch.Tensor  # [B]


def build_extractor(
    in_dim: int, cfg: TeacherConfig, device: torch.device | str | None
) -> PLE | MMoE | SharedBottom:
    """The multi-task body named by `cfg.kind` (ple, mmoe or shared_bottom)."""
    if cfg.kind == "ple":
        return PLE(
            in_dim, 2, cfg.num_levels, cfg.shared_experts, cfg.task_experts, cfg.expert_dims, device
        )
    if cfg.kind == "mmoe":
        experts = cfg.shared_experts + 2 * cfg.task_experts
        return MMoE(in_dim, 2, experts, cfg.expert_dims, device)
    if cfg.kind == "shared_bottom":
        return SharedBottom(in_dim, 2, cfg.expert_dims, device)
    raise ValueError(f"model.teacher.kind: unknown teacher {cfg.kind!r}")


class Teacher(nn.Module):
    """Extractor -> CTR tower and CVR tower -> entire-space probabilities."""

    def __init__(self, in_dim: int, cfg: TeacherConfig, device: torch.device | str | None = None):
        super().__init__()
        self.extractor = build_extractor(in_dim, cfg, device)
        width = self.extractor.out_dim
        self.ctr_tower = MLP(width, cfg.tower_dims, out_dim=1, device=device)
        self.cvr_tower = MLP(width, cfg.tower_dims, out_dim=1, device=device)

    def forward(self, x: torch.Tensor) -> TeacherOutput:
        h_ctr, h_cvr = self.extractor(x)
        logit_ctr = self.ctr_tower(h_ctr).squeeze(-1)
        logit_cvr = self.cvr_tower(h_cvr).squeeze(-1)
        pctr = torch.sigmoid(logit_ctr)
        pcvr = torch.sigmoid(logit_cvr)
        return TeacherOutput(logit_ctr, logit_cvr, pctr, pcvr, pctr * pcvr)
