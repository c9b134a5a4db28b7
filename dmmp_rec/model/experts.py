"""Multi-task feature extractors: CGC levels stacked into PLE, MMoE, and a shared bottom.

Each extractor maps the teacher input [B, D] to one embedding per task ([B, out_dim] each), so the
teacher's towers do not care which one is used; a baseline differs only in this module.

Every extractor's first layers (each expert's first Linear and each gate of the level that reads
the input) are linear in the input. `input_layers()` lists them and `forward_first(pre)` runs the
rest of the network from their outputs, so the teacher can compute those outputs however is
cheapest (per input block, reused across candidate pairs: teacher.FirstLayer);
`forward(x)` is `forward_first` of the layers applied to x.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from dmmp_rec.model.mlp import MLP


def _experts(
    n: int, in_dim: int, dims: list[int], device: torch.device | str | None
) -> nn.ModuleList:
    return nn.ModuleList(MLP(in_dim, dims, device=device) for _ in range(n))


def _mix(logits: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of expert outputs, from the gate's logits. Accumulated expert by
    expert: no [B, E, width] stack is built (on CPU the copy cost more than the arithmetic)."""
    weights = torch.softmax(logits, dim=-1)  # [B, E]
    out = experts[0] * weights[:, :1]
    for e, x in enumerate(experts[1:], start=1):
        out = out.addcmul_(x, weights[:, e : e + 1])
    return out


def _first(expert: MLP) -> nn.Linear:
    first = expert.first
    if first is None:
        raise ValueError("an expert needs at least one layer (model.teacher.expert_dims)")
    return first


def _mlps(modules: nn.ModuleList) -> list[MLP]:
    """The experts of a ModuleList, typed (ModuleList items are plain Modules to a checker)."""
    return [cast(MLP, m) for m in modules]


class CGCLevel(nn.Module):
    """One customised gate control level: per-task experts and shared experts.

    Task k's gate mixes its own and the shared experts. A level feeding another level (PLE) also
    has a shared gate over all experts, producing the next level's shared input.

    Args:
        in_dim (int): width of the level's inputs.
        num_tasks (int): tasks, each with its own experts and gate.
        shared_experts (int): experts every task's gate may mix.
        task_experts (int): experts of each task (0 makes the level an MMoE).
        expert_dims (list[int]): each expert's layer widths; the last is the output width.
        shared_output (bool): whether the level has a shared gate (every level of a PLE but
            the last).
        device (torch.device | str | None): where the parameters are created.
    """

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
        """The level on per-task inputs and a shared input (a PLE level after the first).

        Args:
            task_inputs (list[torch.Tensor]): one input per task, each [B, in_dim].
            shared_input (torch.Tensor): the input of the shared experts and gate, [B, in_dim].

        Returns:
            tuple[list[torch.Tensor], torch.Tensor | None]: each task's gated mix of its own and
            the shared experts ([B, out_dim] each), and the shared gate's mix of all experts for the
            next level ([B, out_dim]; None when this level has no shared gate, i.e. is the last).
        """
        shared = [e(shared_input) for e in self.shared]
        tasks = zip(self._task_experts(), task_inputs, strict=True)
        own = [[e(x) for e in experts] for experts, x in tasks]
        logits = [gate(x) for gate, x in zip(self.task_gates, task_inputs, strict=True)]
        shared_logits = None if self.shared_gate is None else self.shared_gate(shared_input)
        return self._combine(shared, own, logits, shared_logits)

    def _combine(
        self,
        shared: list[torch.Tensor],
        own: list[list[torch.Tensor]],
        logits: list[torch.Tensor],
        shared_logits: torch.Tensor | None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        outs = [_mix(lg, mine + shared) for lg, mine in zip(logits, own, strict=True)]
        next_shared = None
        if shared_logits is not None:
            next_shared = _mix(shared_logits, shared + [o for mine in own for o in mine])
        return outs, next_shared

    def _task_experts(self) -> list[list[MLP]]:
        return [_mlps(cast(nn.ModuleList, experts)) for experts in self.tasks]

    def input_layers(self) -> list[nn.Linear]:
        """The level's layers that read the input directly, in the order `forward_first` reads.

        Returns:
            list[nn.Linear]: shared experts' first layers, each task's experts' first layers, the
            task gates, then the shared gate (when there is one).
        """
        layers = [_first(e) for e in _mlps(self.shared)]
        layers += [_first(e) for experts in self._task_experts() for e in experts]
        layers += [cast(nn.Linear, gate) for gate in self.task_gates]
        return layers + ([self.shared_gate] if self.shared_gate is not None else [])

    def forward_first(
        self, pre: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The level with one input x for every task and the shared part, from input_layers() on x.

        Args:
            pre (list[torch.Tensor]): `layer(x)` for each layer of `input_layers()`, in that order.

        Returns:
            tuple[list[torch.Tensor], torch.Tensor | None]: as `forward`: per-task outputs
            ([B, out_dim] each) and the shared output for the next level (None on a last level).
        """
        it = iter(pre)
        shared = [e.rest(next(it)) for e in _mlps(self.shared)]
        own = [[e.rest(next(it)) for e in experts] for experts in self._task_experts()]
        logits = [next(it) for _ in self.task_gates]
        shared_logits = next(it) if self.shared_gate is not None else None
        return self._combine(shared, own, logits, shared_logits)


class PLE(nn.Module):
    """Progressive layered extraction: `num_levels` CGC levels; one level is CGC itself.

    Args:
        in_dim (int): width of the teacher input.
        num_tasks (int): tasks (2 in the teacher: CTR and CVR).
        num_levels (int): CGC levels, >= 1.
        shared_experts (int): shared experts per level.
        task_experts (int): experts of each task per level.
        expert_dims (list[int]): each expert's layer widths; the last is the output width.
        device (torch.device | str | None): where the parameters are created.
    """

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

    def _first_level(self) -> CGCLevel:
        return cast(CGCLevel, self.levels[0])

    def input_layers(self) -> list[nn.Linear]:
        """The extractor's layers that read the input directly, in the order `forward_first` reads.

        Returns:
            list[nn.Linear]: the first Linear of each expert, then the gates that read the input.
        """
        return self._first_level().input_layers()

    def forward_first(self, pre: list[torch.Tensor]) -> list[torch.Tensor]:
        """The extractor on one input x, from the outputs of `input_layers()` on x.

        Args:
            pre (list[torch.Tensor]): `layer(x)` for each layer of `input_layers()`, in that
                order; each [B, that layer's width].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        task_inputs, shared = self._first_level().forward_first(pre)
        for level in list(self.levels)[1:]:
            assert shared is not None  # every level but the last has a shared gate
            task_inputs, next_shared = level(task_inputs, shared)
            shared = next_shared if next_shared is not None else shared
        return task_inputs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One embedding per task from the teacher input (forward_first of the input layers on x).

        Args:
            x (torch.Tensor): the teacher input, [B, in_dim].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        return self.forward_first([layer(x) for layer in self.input_layers()])


class MMoE(nn.Module):
    """Multi-gate mixture of experts: every expert shared, one softmax gate per task.

    It gets as many experts as the CGC it is compared with (shared + tasks * task-specific).

    Args:
        in_dim (int): width of the teacher input.
        num_tasks (int): tasks, one gate each.
        num_experts (int): experts, all shared.
        expert_dims (list[int]): each expert's layer widths; the last is the output width.
        device (torch.device | str | None): where the parameters are created.
    """

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

    def input_layers(self) -> list[nn.Linear]:
        """The extractor's layers that read the input directly, in the order `forward_first` reads.

        Returns:
            list[nn.Linear]: the first Linear of each expert, then the gates that read the input.
        """
        return self.level.input_layers()

    def forward_first(self, pre: list[torch.Tensor]) -> list[torch.Tensor]:
        """The extractor on one input x, from the outputs of `input_layers()` on x.

        Args:
            pre (list[torch.Tensor]): `layer(x)` for each layer of `input_layers()`, in that
                order; each [B, that layer's width].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        return self.level.forward_first(pre)[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One embedding per task from the teacher input (forward_first of the input layers on x).

        Args:
            x (torch.Tensor): the teacher input, [B, in_dim].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        return self.forward_first([layer(x) for layer in self.input_layers()])


class SharedBottom(nn.Module):
    """One MLP shared by all tasks (the ESMM paper's architecture).

    Args:
        in_dim (int): width of the teacher input.
        num_tasks (int): tasks; each gets the same output.
        expert_dims (list[int]): the MLP's layer widths; the last is the output width.
        device (torch.device | str | None): where the parameters are created.
    """

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

    def input_layers(self) -> list[nn.Linear]:
        """The extractor's layers that read the input directly, in the order `forward_first` reads.

        Returns:
            list[nn.Linear]: the first Linear of each expert, then the gates that read the input.
        """
        return [_first(self.bottom)]

    def forward_first(self, pre: list[torch.Tensor]) -> list[torch.Tensor]:
        """The extractor on one input x, from the outputs of `input_layers()` on x.

        Args:
            pre (list[torch.Tensor]): `layer(x)` for each layer of `input_layers()`, in that
                order; each [B, that layer's width].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        return [self.bottom.rest(pre[0])] * self.num_tasks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One embedding per task from the teacher input (forward_first of the input layers on x).

        Args:
            x (torch.Tensor): the teacher input, [B, in_dim].

        Returns:
            list[torch.Tensor]: one embedding per task, each [B, out_dim].
        """
        return self.forward_first([layer(x) for layer in self.input_layers()])
