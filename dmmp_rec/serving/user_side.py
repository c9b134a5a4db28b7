"""The user side of the student as one plain-PyTorch module: what a serving process runs.

It holds one `nn.EmbeddingBag` per user and context feature (the trained tables, pooled as
configured), deep copies of the student's own user tower and gate networks (the very modules
that were trained, so the math cannot drift from `DMMPModel.query_vector`) and tau frozen at its
trained value. Nothing in it refers to dmmp_rec: exported with torch.export it is pure aten.

Input, per feature in `feature_names` order: a 1-D int64 `values` tensor of ids and a 1-D int64
`offsets` tensor with the start of each user's bag (nn.EmbeddingBag style, B entries; an empty
bag pools to zeros, as in the EBC); then `beta`, a float32 tensor of shape [1]: the serving
knob g' = softmax(gate_logits + [0, beta]) (0 = as trained; see dmmp_rec.model.student), an
input so operators turn it without re-exporting. Output: (query [B, D], gate [B, 2] (click,
conversion)), both at that beta.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.model.student import Student, compose_query, shifted_gate
from dmmp_rec.serving.weights import ExportError


def _bag(spec: FeatureSpec, table: torch.Tensor) -> nn.EmbeddingBag:
    if tuple(table.shape) != (spec.cardinality, spec.dim):
        raise ExportError(
            f"table {spec.table_name}: shape {tuple(table.shape)} does not match feature "
            f"{spec.name!r} (cardinality {spec.cardinality}, dim {spec.dim})"
        )
    return nn.EmbeddingBag.from_pretrained(
        table.detach().to(torch.float32).clone(), freeze=True, mode=spec.pooling
    )


class UserSide(nn.Module):
    """query = [g_c u, g_v u] / tau (u / tau for the two-tower baseline), gate = (g_c, g_v).

    Args:
        user (list[FeatureSpec]): the user features, first in the input order.
        context (list[FeatureSpec]): the context features, after them.
        tables (dict[str, torch.Tensor]): trained tables by table name (ExportError when one
            is missing or of the wrong shape).
        student (Student): the trained student; its user tower and gate are deep-copied, tau
            frozen at its trained value.
    """

    fixed_logit: torch.Tensor  # buffers
    tau: torch.Tensor

    def __init__(
        self,
        user: list[FeatureSpec],
        context: list[FeatureSpec],
        tables: dict[str, torch.Tensor],
        student: Student,
    ) -> None:
        super().__init__()
        specs = user + context
        missing = [s.table_name for s in specs if s.table_name not in tables]
        if missing:
            raise ExportError(f"the checkpoint lacks tables {missing}")
        self.feature_names = [s.name for s in specs]
        self.num_user = len(user)
        self.bags = nn.ModuleList([_bag(s, tables[s.table_name]) for s in specs])
        self.user_tower = copy.deepcopy(student.user_tower).eval()
        self.gate_net = None if student.gate_net is None else copy.deepcopy(student.gate_net).eval()
        fixed = student.fixed_gate if student.fixed_gate is not None else (0.5, 0.5)
        g_c, g_v = fixed
        fixed_logit = torch.tensor(math.log(g_v / g_c) if g_v > 0 else -math.inf)
        self.register_buffer("fixed_logit", fixed_logit.to(torch.float32))
        self.register_buffer("tau", student.tau().detach().to(torch.float32).cpu().clone())
        self.two_tower = student.conversion_tower is None
        self.requires_grad_(False)

    def forward(
        self, values: list[torch.Tensor], offsets: list[torch.Tensor], beta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and gates of B users at the knob `beta`.

        Args:
            values (list[torch.Tensor]): per feature (`feature_names` order), its ids, 1-D int64.
            offsets (list[torch.Tensor]): per feature, each user's bag start, [B] int64.
            beta (torch.Tensor): the serving knob, float32 [1]; 0 is the gate as trained.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: the query, [B, 2d] ([B, d] for the two-tower
            baseline), and the gate (click, conversion), [B, 2].
        """
        pooled = [bag(v, o) for bag, v, o in zip(self.bags, values, offsets, strict=True)]
        user = torch.cat(pooled[: self.num_user], dim=1)
        u_tau = F.normalize(self.user_tower(torch.cat(pooled, dim=1)), dim=-1) / self.tau
        if self.two_tower:
            one_hot = torch.ones_like(u_tau[:, :1])
            return u_tau, torch.cat([one_hot, torch.zeros_like(one_hot)], dim=1)
        if self.gate_net is None:
            z = self.fixed_logit.expand(u_tau.shape[0])
        else:
            logits = self.gate_net(user)
            z = logits[:, 1] - logits[:, 0]
        return compose_query(u_tau, z, beta), shifted_gate(z, beta)
