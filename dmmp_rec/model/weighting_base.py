"""What every loss-weighting scheme shares: the distillation warm-up, the rank reducer of the
schemes' statistics, and the base module that stacks the terms and reports them.

Every scheme keeps every term in the graph: a term held back by the warm-up is multiplied by its
(possibly zero) factor instead of being skipped, so every parameter gets a gradient every step
and DDP with static_graph / find_unused_parameters=False is satisfied.

Each scheme returns the objective that is minimised and a `loss` a person can watch: the plain
sum of the terms, which never goes negative and does not move when the weights do. The schemes
themselves are in `model.weighting`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from dmmp_rec.config.model import DISTILL_TERMS


@dataclass(frozen=True)
class DistillWarmup:
    """The distillation multiplier: `start` for `steps` steps, then linear to 1 over `ramp`."""

    start: float = 0.0
    steps: int = 0
    ramp: int = 0

    def factor(self, step: torch.Tensor) -> torch.Tensor:
        """The distillation terms' multiplier at a training step.

        Args:
            step: the model's step counter (a 0-d tensor, so the schedule stays on the device).

        Returns:
            A 0-d float32 tensor: `start` before `steps`, then rising linearly to 1 over `ramp`.
        """
        step = step.to(torch.float32)
        if self.ramp == 0:
            progress = (step >= self.steps).to(torch.float32)
        else:
            progress = ((step - self.steps + 1) / self.ramp).clamp(0.0, 1.0)
        return self.start + (1.0 - self.start) * progress


class Weighted(NamedTuple):
    objective: torch.Tensor  # what the optimiser minimises
    loss: torch.Tensor  # the unweighted sum of the terms, >= 0: what a person watches
    weights: dict[str, torch.Tensor]  # effective multiplier of each term (warm-up included)
    scales: dict[str, torch.Tensor]  # running scale of each term (`scaled` only)


# averages a detached loss vector over the ranks (dmmp_rec.distributed.collectives.rank_mean)
LossReducer = Callable[[torch.Tensor], torch.Tensor]


def _one_process(values: torch.Tensor) -> torch.Tensor:
    """The reducer of a lone model: its own losses are the mean."""
    return values.detach().clone()


class LossWeighting(nn.Module):
    """Base: stacks the terms, applies the warm-up, and lets a subclass weigh them.

    Args:
        terms (tuple[str, ...]): the loss terms, in the order weights are reported.
        warmup (DistillWarmup): the schedule of the distillation terms' multiplier.
        reduce_losses (LossReducer | None): averages a detached loss vector over the ranks
            (`rank_mean` under DMP); None: this process's own losses.
    """

    is_distill: torch.Tensor  # buffer

    def __init__(
        self,
        terms: tuple[str, ...],
        warmup: DistillWarmup,
        *,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__()
        self.terms = terms
        self.warmup = warmup
        # the process group's rank mean under DMP (given when the model is built), else this
        # process's own losses
        self.reduce_losses: LossReducer = reduce_losses or _one_process
        # which terms the warm-up scales: a constant, built once on the model's device (a
        # per-step torch.tensor(list, device=cuda) is a host-to-device copy the CPU waits for);
        # not persistent, so checkpoints keep their keys
        self.register_buffer("is_distill", self._distill_mask(), persistent=False)

    def _distill_mask(self) -> torch.Tensor:
        return torch.tensor([t in DISTILL_TERMS for t in self.terms], dtype=torch.bool)

    def reset_parameters(self) -> None:
        """Refill the constants (after DMP re-initialises)."""
        with torch.no_grad():
            self.is_distill.copy_(self._distill_mask())

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, effective weights) from the stacked terms and the warm-up multipliers.

        Args:
            losses: the stacked loss terms [K], in `terms` order.
            mult: each term's warm-up multiplier [K] (1 for a term the warm-up does not hold).

        Returns:
            (objective, effective weight of each term [K], warm-up included).
        """
        raise NotImplementedError

    def _scales(self) -> torch.Tensor | None:
        """The running scale of each term, for the report.

        Returns:
            [K] scales for the schemes that keep them (`scaled`, `anchored`), else None.
        """
        return None

    def forward(self, losses: dict[str, torch.Tensor], step: torch.Tensor) -> Weighted:
        """One step's objective from the loss terms, with what a person watches beside it.

        Args:
            losses: {term: scalar loss} holding at least every term of `terms`.
            step: the model's step counter, for the distillation warm-up.

        Returns:
            Weighted: the objective to minimise, the plain sum of the terms, and each term's
            weight and (for the scaled forms) running scale, detached.
        """
        vec = torch.stack([losses[t] for t in self.terms])
        factor = self.warmup.factor(step).to(vec.device, vec.dtype)
        mult = torch.where(self.is_distill, factor, torch.ones_like(vec))
        objective, weights = self._combine(vec, mult)
        scales = self._scales()
        return Weighted(
            objective,
            vec.detach().sum(),
            {t: weights[k].detach() for k, t in enumerate(self.terms)},
            {}
            if scales is None
            else {t: scales[k].detach().clone() for k, t in enumerate(self.terms)},
        )
