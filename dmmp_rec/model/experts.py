"""Multi-task feature extractors: CGC levels stacked into PLE, MMoE, and a shared bottom.

Each extractor maps the teacher input [B, D] to one embedding per task ([B, out_dim] each), so the
teacher's towers do not care which one is used; a baseline differs only in this module.
"""

from __future__ import annotations

import torch
from torch import nn

from dmmp_rec.model.mlp import MLP


def _experts(
    n: int, in_dim: int, dims: list[int], device: torch.device | str | None
) -> nn.ModuleList:
    return nn.ModuleList(MLP(in_dim, dims, device=device) for _ in range(n))


def _mix(gate: nn.Linear, x: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of expert outputs; the gate reads `x`."""
    weights = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # [B, E, 1]
    return (weights * torch.stack(experts, dim=1)).sum(dim=1)


class CGCLevel(nn.Module):
    """One customised gate control level: per-task experts and shared experts; task k's gate
    mixes its own and the shared experts. A level feeding another level (PLE) also has a shared
    gate over all experts, producing the next level's shared input."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        shared_experts: int,
        task_experts: int,
        expert_dims: list[int],
        shared_output: bool,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.shared = _experts(shared_experts, in_dim, expert_dims, device)
        self.tasks = nn.ModuleList(
            _experts(task_experts, in_dim, expert_dims, device) for _ in range(num_tasks)
        )
        per_task = task_experts + shared_experts
        self.task_gates = nn.ModuleList(
            nn.Linear(in_dim, per_task, device=device) for _ in range(num_tasks)
        )
        total = shared_experts + num_tasks * task_experts
        self.shared_gate = nn.Linear(in_dim, total, device=device) if shared_output else None
        self.out_dim = expert_dims[-1]

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        shared = [e(shared_input) for e in self.shared]
        own = [[e(x) for e in experts] for experts, x in zip(self.tasks, task_inputs, strict=True)]
        outs = [
            _mix(gate, x, mine + shared)
            for gate, x, mine in zip(self.task_gates, task_inputs, own, strict=True)
        ]
        next_shared = None
        if self.shared_gate is not None:
            every = shared + [o for mine in own for o in mine]
            next_shared = _mix(self.shared_gate, shared_input, every)
        return outs, next_shared


class PLE(nn.Module):
    """Progressive layered extraction: `num_levels` CGC levels; one level is CGC itself."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        num_levels: int,
        shared_experts: int,
        task_experts: int,
        expert_dims: list[int],
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        levels = []
        for level in range(num_levels):
            width = in_dim if level == 0 else expert_dims[-1]
            last = level == num_levels - 1
            levels.append(
                CGCLevel(
                    width, num_tasks, shared_experts, task_experts, expert_dims, not last, device
                )
            )
        self.levels = nn.ModuleList(levels)
        self.out_dim = expert_dims[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        task_inputs, shared = [x] * self.num_tasks, x
        for level in self.levels:
            task_inputs, next_shared = level(task_inputs, shared)
            shared = next_shared if next_shared is not None else shared
        return task_inputs


class MMoE(nn.Module):
    """Multi-gate mixture of experts: every expert shared, one softmax gate per task. It gets as
    many experts as the CGC it is compared with (shared + tasks * task-specific)."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        num_experts: int,
        expert_dims: list[int],
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.level = CGCLevel(in_dim, num_tasks, num_experts, 0, expert_dims, False, device)
        self.num_tasks = num_tasks
        self.out_dim = expert_dims[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, _ = self.level([x] * self.num_tasks, x)
        return outs


class SharedBottom(nn.Module):
    """One MLP shared by all tasks (the ESMM paper's architecture)."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int,
        expert_dims: list[int],
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.bottom = MLP(in_dim, expert_dims, device=device)
        self.num_tasks = num_tasks
        self.out_dim = self.bottom.out_dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.bottom(x)
        return [h] * self.num_tasks
