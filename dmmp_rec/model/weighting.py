"""How the loss terms are combined into one loss: uncertainty, fixed or DWA weights, and the
warm-up that holds the distillation terms back while the teacher is still immature.

Every scheme keeps every term in the graph: a term held back by the warm-up is multiplied by its
(possibly zero) factor instead of being skipped, so every parameter gets a gradient every step
and DDP with static_graph / find_unused_parameters=False is satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dmmp_rec.config.model import DISTILL_TERMS, LossConfig


@dataclass(frozen=True)
class DistillWarmup:
    """The distillation multiplier: `start` for `steps` steps, then linear to 1 over `ramp`."""

    start: float = 0.0
    steps: int = 0
    ramp: int = 0

    def factor(self, step: torch.Tensor) -> torch.Tensor:
        step = step.to(torch.float32)
        if self.ramp == 0:
            progress = (step >= self.steps).to(torch.float32)
        else:
            progress = ((step - self.steps + 1) / self.ramp).clamp(0.0, 1.0)
        return self.start + (1.0 - self.start) * progress


class LossWeighting(nn.Module):
    """Base: stacks the terms, applies the warm-up, and lets a subclass weigh them."""

    def __init__(self, terms: tuple[str, ...], warmup: DistillWarmup) -> None:
        super().__init__()
        self.terms = terms
        self.warmup = warmup

    def combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, effective weights) from the stacked terms and the warm-up multipliers."""
        raise NotImplementedError

    def forward(
        self, losses: dict[str, torch.Tensor], step: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        vec = torch.stack([losses[t] for t in self.terms])
        factor = self.warmup.factor(step).to(vec.device, vec.dtype)
        is_distill = torch.tensor(
            [t in DISTILL_TERMS for t in self.terms], dtype=torch.bool, device=vec.device
        )
        mult = torch.where(is_distill, factor, torch.ones_like(vec))
        total, weights = self.combine(vec, mult)
        return total, {t: weights[k].detach() for k, t in enumerate(self.terms)}


class UncertaintyWeighting(LossWeighting):
    """Kendall et al. 2018: L = sum_k exp(-s_k) L_k + s_k with learnable log-variances s_k."""

    def __init__(self, terms: tuple[str, ...], warmup: DistillWarmup, init: float = 0.0) -> None:
        super().__init__(terms, warmup)
        self.init = init
        self.log_vars = nn.Parameter(torch.full((len(terms),), init))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.log_vars.fill_(self.init)

    def combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        precision = torch.exp(-self.log_vars)
        total = (mult * (precision * losses + self.log_vars)).sum()
        return total, mult * precision


class FixedWeighting(LossWeighting):
    """Constant weights from the config (1 for a term it does not name)."""

    def __init__(
        self, terms: tuple[str, ...], warmup: DistillWarmup, weights: dict[str, float]
    ) -> None:
        super().__init__(terms, warmup)
        self.fixed = [float(weights.get(t, 1.0)) for t in terms]

    def combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = mult * torch.tensor(self.fixed, dtype=losses.dtype, device=losses.device)
        return (w * losses).sum(), w


class DWAWeighting(LossWeighting):
    """Dynamic weight average (Liu et al. 2019): w_k = K softmax_k(r_k / T), r_k the ratio of
    term k's mean loss over the last window of steps to the window before; 1 until two windows
    have passed. The statistics are buffers (zero means "not seen yet"), so they checkpoint."""

    def __init__(
        self, terms: tuple[str, ...], warmup: DistillWarmup, temperature: float, window: int
    ) -> None:
        super().__init__(terms, warmup)
        self.temperature = temperature
        self.window = window
        k = len(terms)
        self.register_buffer("window_sum", torch.zeros(k))
        self.register_buffer("window_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("last_mean", torch.zeros(k))
        self.register_buffer("prev_mean", torch.zeros(k))

    @torch.no_grad()
    def _update(self, losses: torch.Tensor) -> None:
        self.window_sum += losses.detach().to(self.window_sum.dtype)
        self.window_count += 1
        full = self.window_count >= self.window
        self.prev_mean.copy_(torch.where(full, self.last_mean, self.prev_mean))
        self.last_mean.copy_(torch.where(full, self.window_sum / self.window, self.last_mean))
        self.window_sum.mul_((~full).to(self.window_sum.dtype))
        self.window_count.mul_((~full).to(self.window_count.dtype))

    def current(self) -> torch.Tensor:
        """The weights DWA gives now (no multipliers)."""
        ready = (self.prev_mean > 0).all()
        ratio = self.last_mean / self.prev_mean.clamp(min=1e-12)
        dwa = len(self.terms) * torch.softmax(ratio / self.temperature, dim=0)
        return torch.where(ready, dwa, torch.ones_like(dwa))

    def combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self._update(losses)
        w = mult * self.current().to(losses.dtype)
        return (w * losses).sum(), w


def build_weighting(terms: tuple[str, ...], cfg: LossConfig) -> LossWeighting:
    """The scheme named by `cfg.weighting`, with the distillation warm-up of `cfg`."""
    warmup = DistillWarmup(
        cfg.distill_warmup_start, cfg.distill_warmup_steps, cfg.distill_ramp_steps
    )
    if cfg.weighting == "uncertainty":
        return UncertaintyWeighting(terms, warmup, cfg.uncertainty_init)
    if cfg.weighting == "fixed":
        return FixedWeighting(terms, warmup, cfg.fixed_weights)
    if cfg.weighting == "dwa":
        return DWAWeighting(terms, warmup, cfg.dwa_temperature, cfg.dwa_window)
    raise ValueError(f"model.loss.weighting: unknown scheme {cfg.weighting!r}")
