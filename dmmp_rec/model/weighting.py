"""How the loss terms are combined into one loss: scaled, uncertainty, fixed or DWA weights, and
the warm-up that holds the distillation terms back while the teacher is still immature.

Every scheme keeps every term in the graph: a term held back by the warm-up is multiplied by its
(possibly zero) factor instead of being skipped, so every parameter gets a gradient every step
and DDP with static_graph / find_unused_parameters=False is satisfied.

Each scheme returns the objective that is minimised and a `loss` a person can watch: the plain
sum of the terms, which never goes negative and does not move when the weights do (the
objective of the uncertainty forms goes below zero with its log-variances, and the scaled
form's is about the number of terms by construction). The math is in docs/model.md.

Statistics a scheme keeps across steps (the running scales, DWA's window means) are updated in
training mode only, from losses averaged over the ranks (`reduce_losses`, which the sharded
model's builder passes in), so that every rank weighs the terms identically: torchrec's DMP
wraps the dense part in DDP with broadcast_buffers=False, and a rank-local statistic would
silently give each rank its own weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

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
    """Base: stacks the terms, applies the warm-up, and lets a subclass weigh them."""

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


class UncertaintyWeighting(LossWeighting):
    """Kendall et al. 2018: L = sum_k exp(-s_k) L_k + s_k with learnable log-variances s_k.

    Its optimum is exp(-s_k) = 1 / L_k: a term whose loss has a floor of 0 (distillation KLs) or
    is tiny (rare-event BCEs) gets a weight that grows without bound (docs/model.md)."""

    def __init__(
        self,
        terms: tuple[str, ...],
        warmup: DistillWarmup,
        init: float = 0.0,
        *,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__(terms, warmup, reduce_losses=reduce_losses)
        self.init = init
        self.log_vars = nn.Parameter(torch.full((len(terms),), init))

    def reset_parameters(self) -> None:
        """Refill the constants and reset the log-variances (after DMP re-initialises)."""
        super().reset_parameters()
        with torch.no_grad():
            self.log_vars.fill_(self.init)

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kendall's objective sum_k m_k (exp(-s_k) L_k + s_k)."""
        precision = torch.exp(-self.log_vars)
        objective = (mult * (precision * losses + self.log_vars)).sum()
        return objective, mult * precision


class ScaledWeighting(UncertaintyWeighting):
    """Kendall's form on terms divided by a detached running estimate of their own scale:
    L = sum_k exp(-s_k) L_k / m_k + s_k, m_k <- d m_k + (1 - d) L_k (rank mean, training only).

    L_k / m_k stays near 1, so the optimum exp(-s_k) = m_k / L_k stays near 1 and the learnable
    weights settle instead of chasing 1 / L_k; every term enters at the same scale, and a term
    that rises above its running scale is weighted down. The reported weight is exp(-s_k)
    (warm-up included); the scale m_k is reported beside it."""

    scale: torch.Tensor  # buffer

    def __init__(
        self,
        terms: tuple[str, ...],
        warmup: DistillWarmup,
        init: float,
        decay: float,
        *,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__(terms, warmup, init, reduce_losses=reduce_losses)
        self.decay = decay
        self.register_buffer("scale", torch.zeros(len(terms)))  # 0: not seen yet

    def reset_parameters(self) -> None:
        """Refill the constants and forget the running scales (after DMP re-initialises)."""
        super().reset_parameters()
        with torch.no_grad():
            self.scale.zero_()

    @torch.no_grad()
    def _update(self, losses: torch.Tensor) -> None:
        mean = self.reduce_losses(losses).to(self.scale.dtype)
        fresh = self.scale == 0
        self.scale.copy_(
            torch.where(fresh, mean, self.decay * self.scale + (1 - self.decay) * mean)
        )

    def _scales(self) -> torch.Tensor:
        """The running scale m_k of each term.

        Returns:
            The [K] buffer (0 for a term not seen yet).
        """
        return self.scale

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k m_k (exp(-s_k) L_k / scale_k + s_k); updates the scales in training mode."""
        if self.training:
            self._update(losses)
        scale = self.scale.to(losses.dtype).clamp(min=1e-8)
        scale = torch.where(self.scale > 0, scale, losses.detach().clamp(min=1e-8))
        precision = torch.exp(-self.log_vars)
        objective = (mult * (precision * losses / scale + self.log_vars)).sum()
        return objective, mult * precision


class AnchoredWeighting(ScaledWeighting):
    """Kendall's weights anchored at 1: L = sum_k exp(-s_k) L_k + c_k s_k, with c_k the same
    detached running scale as `scaled`.

    The optimum over s_k is exp(-s_k) = c_k / L_k, about 1 whatever the term's size, so the
    weights settle; but the model's parameters see the raw terms (times weights near 1), so the
    balance between terms stays that of fixed unit weights, which `scaled` loses by dividing
    every term by its scale (docs/model.md: that starves the click tower's in-batch softmax).
    A term whose loss rises above its running scale is weighted down, one that falls faster
    than it is weighted up."""

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k m_k (exp(-s_k) L_k + c_k s_k); updates the scales in training mode."""
        if self.training:
            self._update(losses)
        scale = torch.where(self.scale > 0, self.scale.to(losses.dtype), losses.detach())
        precision = torch.exp(-self.log_vars)
        objective = (mult * (precision * losses + scale * self.log_vars)).sum()
        return objective, mult * precision


class FixedWeighting(LossWeighting):
    """Constant weights from the config (1 for a term it does not name)."""

    fixed_weights: torch.Tensor  # buffer

    def __init__(
        self,
        terms: tuple[str, ...],
        warmup: DistillWarmup,
        weights: dict[str, float],
        *,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__(terms, warmup, reduce_losses=reduce_losses)
        self.fixed = [float(weights.get(t, 1.0)) for t in terms]
        # a buffer, for the reason `is_distill` is one
        self.register_buffer("fixed_weights", torch.tensor(self.fixed), persistent=False)

    def reset_parameters(self) -> None:
        """Refill the constants and the configured weights (after DMP re-initialises)."""
        super().reset_parameters()
        with torch.no_grad():
            self.fixed_weights.copy_(torch.tensor(self.fixed))

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k m_k w_k L_k with the configured weights w_k."""
        w = mult * self.fixed_weights.to(losses.dtype)
        return (w * losses).sum(), w


class DWAWeighting(LossWeighting):
    """Dynamic weight average (Liu et al. 2019): w_k = K softmax_k(r_k / T), r_k the ratio of
    term k's mean loss over the last window of steps to the window before; 1 until two windows
    have passed. The statistics are buffers (zero means "not seen yet"), so they checkpoint;
    they accumulate rank-averaged losses, so every rank has the same weights."""

    window_sum: torch.Tensor  # buffers
    window_count: torch.Tensor
    last_mean: torch.Tensor
    prev_mean: torch.Tensor

    def __init__(
        self,
        terms: tuple[str, ...],
        warmup: DistillWarmup,
        temperature: float,
        window: int,
        *,
        reduce_losses: LossReducer | None = None,
    ) -> None:
        super().__init__(terms, warmup, reduce_losses=reduce_losses)
        self.temperature = temperature
        self.window = window
        k = len(terms)
        self.register_buffer("window_sum", torch.zeros(k))
        self.register_buffer("window_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("last_mean", torch.zeros(k))
        self.register_buffer("prev_mean", torch.zeros(k))

    @torch.no_grad()
    def _update(self, losses: torch.Tensor) -> None:
        self.window_sum += self.reduce_losses(losses).to(self.window_sum.dtype)
        self.window_count += 1
        full = self.window_count >= self.window
        self.prev_mean.copy_(torch.where(full, self.last_mean, self.prev_mean))
        self.last_mean.copy_(torch.where(full, self.window_sum / self.window, self.last_mean))
        self.window_sum.mul_((~full).to(self.window_sum.dtype))
        self.window_count.mul_((~full).to(self.window_count.dtype))

    def current(self) -> torch.Tensor:
        """The weights DWA gives now (no multipliers).

        Returns:
            [K] weights: K softmax(r / T) once two windows have passed, else ones.
        """
        ready = (self.prev_mean > 0).all()
        ratio = self.last_mean / self.prev_mean.clamp(min=1e-12)
        dwa = len(self.terms) * torch.softmax(ratio / self.temperature, dim=0)
        return torch.where(ready, dwa, torch.ones_like(dwa))

    def _combine(
        self, losses: torch.Tensor, mult: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k m_k w_k L_k with DWA's current weights; updates the windows in training mode."""
        if self.training:
            self._update(losses)
        w = mult * self.current().to(losses.dtype)
        return (w * losses).sum(), w


def build_weighting(
    terms: tuple[str, ...], cfg: LossConfig, reduce_losses: LossReducer | None = None
) -> LossWeighting:
    """The scheme named by `cfg.weighting`, with the distillation warm-up of `cfg`.

    Args:
        terms: the loss terms, in the order the weights are reported.
        cfg: `model.loss` (scheme, warm-up, scheme parameters).
        reduce_losses: averages a detached loss vector over the ranks, so that the statistics
            of `scaled`, `anchored` and `dwa` are the same on every rank (None: one process).

    Returns:
        The weighting module, to be held by the dense part of the model.
    """
    warmup = DistillWarmup(
        cfg.distill_warmup_start, cfg.distill_warmup_steps, cfg.distill_ramp_steps
    )
    if cfg.weighting == "scaled":
        return ScaledWeighting(
            terms, warmup, cfg.uncertainty_init, cfg.scale_decay, reduce_losses=reduce_losses
        )
    if cfg.weighting == "anchored":
        return AnchoredWeighting(
            terms, warmup, cfg.uncertainty_init, cfg.scale_decay, reduce_losses=reduce_losses
        )
    if cfg.weighting == "uncertainty":
        return UncertaintyWeighting(
            terms, warmup, cfg.uncertainty_init, reduce_losses=reduce_losses
        )
    if cfg.weighting == "fixed":
        return FixedWeighting(terms, warmup, cfg.fixed_weights, reduce_losses=reduce_losses)
    if cfg.weighting == "dwa":
        return DWAWeighting(
            terms, warmup, cfg.dwa_temperature, cfg.dwa_window, reduce_losses=reduce_losses
        )
    raise ValueError(f"model.loss.weighting: unknown scheme {cfg.weighting!r}")
