"""The student: a user tower, a click item tower, a conversion item tower and a user gate.

All tower outputs are L2-normalised vectors of one width d. Scores are cosine similarities over a
temperature tau: s_c = <u, i_c> / tau, s_v = <u, i_v> / tau, fused f = g_c s_c + g_v s_v with the
per-user gate g = softmax(f_g(user embeddings)). Because g depends on the user only,
f = <[g_c u, g_v u] / tau, [i_c, i_v]>: retrieval is one inner-product search over 2d floats.

The serving knob: g' = softmax(gate_logits + [0, beta]) with one global beta (0 = as trained)
leans every user's candidates towards conversions (beta > 0) or clicks (beta < 0) without
retraining; beta = -inf is click-only retrieval, +inf conversion-only. As a softmax of two
logits, g'_v = sigmoid(z + beta) with z the gate's conversion-minus-click logit, which is exact
at beta = +-inf too.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dmmp_rec.config.model import StudentConfig
from dmmp_rec.model.mlp import MLP

MIN_TAU = 1e-2

# The fixed gate of the variants without a learned one: no_gate mixes the tasks evenly; the
# two-tower baseline has only the click task.
FIXED_GATES = {"no_gate": (0.5, 0.5), "two_tower": (1.0, 0.0)}


class StudentOutput(NamedTuple):
    u: torch.Tensor  # [B, d]
    i_c: torch.Tensor  # [B, d]
    i_v: torch.Tensor | None  # [B, d]; None for the two-tower baseline
    gate: torch.Tensor  # [B, 2]
    s_c: torch.Tensor  # [B]
    s_v: torch.Tensor  # [B]; the click score for the two-tower baseline
    fused: torch.Tensor  # [B]
    tau: torch.Tensor  # scalar


def shifted_gate(logit_diff: torch.Tensor, beta: float | torch.Tensor = 0.0) -> torch.Tensor:
    """(g_c, g_v) = softmax([0, z + beta]), computed as two sigmoids so beta may be +-inf exactly.

    Args:
        logit_diff (torch.Tensor): the conversion-minus-click gate logit z, [B].
        beta (float | torch.Tensor): the serving knob added to z; 0 is the gate as trained,
            +inf conversion-only, -inf click-only.

    Returns:
        torch.Tensor: the gate, [B, 2], rows summing to 1.
    """
    z = logit_diff + beta
    return torch.stack([torch.sigmoid(-z), torch.sigmoid(z)], dim=-1)


def compose_query(
    u_over_tau: torch.Tensor, logit_diff: torch.Tensor, beta: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """The retrieval query [g'_c u, g'_v u] / tau at the knob `beta`.

    Args:
        u_over_tau (torch.Tensor): the user vector over the temperature, [B, d].
        logit_diff (torch.Tensor): the gate logit z, [B].
        beta (float | torch.Tensor): the serving knob (see `shifted_gate`).

    Returns:
        torch.Tensor: the query, [B, 2d], in u_over_tau's dtype.
    """
    g = shifted_gate(logit_diff, beta).to(u_over_tau.dtype)
    return torch.cat([g[:, :1] * u_over_tau, g[:, 1:] * u_over_tau], dim=1)


class Student(nn.Module):
    """Towers and gate of one variant.

    `two_tower` has no conversion tower and no gate, `no_gate` has a fixed 0.5/0.5 gate; `dmmp`
    and `no_distill` have all parts.

    Args:
        user_dim (int): width of the user tower's input (user and context groups).
        item_dim (int): width of the item towers' input (the item group).
        gate_dim (int): width of the gate's input (the user group).
        cfg (StudentConfig): the student section (towers, tau, gate).
        variant (str): model.variant.
        device (torch.device | str | None): where the parameters are created.
    """

    fixed_tau: torch.Tensor  # buffer

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        gate_dim: int,
        cfg: StudentConfig,
        variant: str,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.out_dim = cfg.out_dim
        self.user_tower = MLP(user_dim, cfg.tower_dims, out_dim=cfg.out_dim, device=device)
        self.click_tower = MLP(item_dim, cfg.tower_dims, out_dim=cfg.out_dim, device=device)
        self.conversion_tower = (
            None
            if variant == "two_tower"
            else MLP(item_dim, cfg.tower_dims, out_dim=cfg.out_dim, device=device)
        )
        self.fixed_gate = FIXED_GATES.get(variant)
        self.gate_net = (
            MLP(gate_dim, cfg.gate_dims, out_dim=2, device=device)
            if self.fixed_gate is None
            else None
        )
        # teacher_cvr: the gate has its own target (gate_targets), so the fused terms see it
        # detached and do not train it
        self.gate_in_fused = cfg.gate_training == "fused"
        self.init_tau = cfg.tau
        self.log_tau = (
            nn.Parameter(torch.full((), math.log(cfg.tau), device=device))
            if cfg.learn_tau
            else None
        )
        # a fixed tau lives on the model's device: a fresh host tensor moved there every step
        # is a copy the CPU waits for; not persistent, so checkpoints keep their keys
        self.register_buffer(
            "fixed_tau", torch.full((), float(cfg.tau), device=device), persistent=False
        )

    def reset_parameters(self) -> None:
        """Re-initialise tau (DistributedModelParallel calls this on a meta-built model)."""
        with torch.no_grad():
            self.fixed_tau.fill_(self.init_tau)
            if self.log_tau is not None:
                self.log_tau.fill_(math.log(self.init_tau))

    @property
    def vector_dim(self) -> int:
        """Width of query and item vectors: 2d, or d for the two-tower baseline."""
        return self.out_dim if self.conversion_tower is None else 2 * self.out_dim

    def tau(self) -> torch.Tensor:
        """The score temperature: the fixed `model.student.tau`, or the learned one (at least 0.01).

        Returns:
            torch.Tensor: a scalar on the model's device.
        """
        if self.log_tau is None:
            return self.fixed_tau
        return self.log_tau.exp().clamp(min=MIN_TAU)

    def user_embedding(self, user: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The user tower's L2-normalised vector u.

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, w].
            context (torch.Tensor | None): the pooled context embeddings, [B, w]; None without.

        Returns:
            torch.Tensor: u, [B, d].
        """
        x = user if context is None else torch.cat([user, context], dim=1)
        return F.normalize(self.user_tower(x), dim=-1)

    def item_embeddings(self, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The item towers' L2-normalised vectors (i_c, i_v).

        Args:
            item (torch.Tensor): the pooled item embeddings, [B, item_dim].

        Returns:
            tuple[torch.Tensor, torch.Tensor | None]: i_c and i_v, [B, d] each; i_v is None for the
            two-tower baseline.
        """
        i_c = F.normalize(self.click_tower(item), dim=-1)
        if self.conversion_tower is None:
            return i_c, None
        return i_c, self.conversion_embedding(item)

    def conversion_embedding(self, item: torch.Tensor) -> torch.Tensor:
        """i_v; the two-tower baseline has no conversion tower and scores with i_c.

        Args:
            item (torch.Tensor): the pooled item embeddings, [B, item_dim].

        Returns:
            torch.Tensor: the L2-normalised conversion vector, [B, d].
        """
        tower = self.click_tower if self.conversion_tower is None else self.conversion_tower
        return F.normalize(tower(item), dim=-1)

    def gate_logit(self, user: torch.Tensor) -> torch.Tensor:
        """Each user's conversion-minus-click gate logit z: g = (sigmoid(-z), sigmoid(z)).

        A fixed gate (g_c, g_v) has z = log(g_v / g_c) for every user (-inf for the two-tower).

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, gate_dim] (the gate's input).

        Returns:
            torch.Tensor: z, [B].
        """
        if self.gate_net is None:
            assert self.fixed_gate is not None  # set for every variant without a gate net
            g_c, g_v = self.fixed_gate
            z = math.log(g_v / g_c) if g_v > 0 else -math.inf
            return torch.full((user.shape[0],), z, dtype=user.dtype, device=user.device)
        logits = self.gate_net(user)
        return logits[:, 1] - logits[:, 0]

    def gate(self, user: torch.Tensor, beta: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Each user's task preferences (click, conversion), from user features only.

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, gate_dim] (the gate's input).
            beta (float | torch.Tensor): the serving knob shifting the conversion logit; the
                two-tower baseline ignores it and keeps (1, 0).

        Returns:
            torch.Tensor: the gate, [B, 2], rows summing to 1.
        """
        if self.conversion_tower is None:  # filled on the device: no host-to-device copy
            only_clicks = user.new_zeros((user.shape[0], 2))
            only_clicks[:, 0] = 1.0
            return only_clicks
        return shifted_gate(self.gate_logit(user), beta)

    def forward(
        self, user: torch.Tensor, context: torch.Tensor | None, item: torch.Tensor
    ) -> StudentOutput:
        """The student on a batch of impressions: towers, gate and scores.

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, w].
            context (torch.Tensor | None): the pooled context embeddings, [B, w]; None without.
            item (torch.Tensor): the pooled item embeddings, [B, item_dim].

        Returns:
            StudentOutput: vectors, gate and scores s_c, s_v, fused ([B] each) and tau.
        """
        u = self.user_embedding(user, context)
        i_c, i_v = self.item_embeddings(item)
        return self.scores(u, i_c, i_v, user)

    def scores(
        self, u: torch.Tensor, i_c: torch.Tensor, i_v: torch.Tensor | None, user: torch.Tensor
    ) -> StudentOutput:
        """The output from tower vectors already computed (the gate reads `user`).

        With gate_training=teacher_cvr the fused score sees the gate detached.

        Args:
            u (torch.Tensor): the user vector, [B, d].
            i_c (torch.Tensor): the click item vector, [B, d].
            i_v (torch.Tensor | None): the conversion item vector, [B, d]; None for the two-tower
                (s_v is then s_c).
            user (torch.Tensor): the pooled user-group embeddings, [B, gate_dim] (the gate's input).

        Returns:
            StudentOutput: the vectors given, the gate and the scores.
        """
        g = self.gate(user)
        tau = self.tau().to(u.device)
        s_c = (u * i_c).sum(-1) / tau
        s_v = s_c if i_v is None else (u * i_v).sum(-1) / tau
        g_f = g if self.gate_in_fused else g.detach()
        fused = g_f[:, 0] * s_c + g_f[:, 1] * s_v
        return StudentOutput(u, i_c, i_v, g, s_c, s_v, fused, tau)

    def query_parts(
        self, user: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What a query is composed of at any beta: (u / tau, gate logit z).

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, w].
            context (torch.Tensor | None): the pooled context embeddings, [B, w]; None without.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: u / tau, [B, d], and z, [B].
        """
        u = self.user_embedding(user, context)
        return u / self.tau().to(u.device), self.gate_logit(user)

    def query_vector(
        self, user: torch.Tensor, context: torch.Tensor | None, beta: float | torch.Tensor = 0.0
    ) -> torch.Tensor:
        """The retrieval query [g'_c u, g'_v u] / tau at the knob `beta`.

        Args:
            user (torch.Tensor): the pooled user-group embeddings, [B, w].
            context (torch.Tensor | None): the pooled context embeddings, [B, w]; None without.
            beta (float | torch.Tensor): the serving knob (see `shifted_gate`).

        Returns:
            torch.Tensor: [B, 2d]; u / tau, [B, d], for the two-tower baseline.
        """
        u_tau, z = self.query_parts(user, context)
        if self.conversion_tower is None:
            return u_tau
        return compose_query(u_tau, z, beta)

    def item_vector(self, item: torch.Tensor) -> torch.Tensor:
        """The item side of the inner-product search: [i_c, i_v].

        Args:
            item (torch.Tensor): the pooled item embeddings, [B, item_dim].

        Returns:
            torch.Tensor: [B, 2d]; i_c, [B, d], for the two-tower baseline.
        """
        i_c, i_v = self.item_embeddings(item)
        return i_c if i_v is None else torch.cat([i_c, i_v], dim=1)
