"""How the loss terms are combined into one loss: the scaled, anchored, uncertainty, fixed and
DWA schemes, on the shared base of `model.weighting_base` (warm-up, reducer, reporting).

The objective of the uncertainty forms goes below zero with their log-variances, and the scaled
form's is about the number of terms by construction; the `loss` each reports beside it is the
plain sum of the terms. The math is in docs/model.md.

Statistics a scheme keeps across steps (the running scales, DWA's window means) are updated in
training mode only, from losses averaged over the ranks (`reduce_losses`, which the sharded
model's builder passes in), so that every rank weighs the terms identically: torchrec's DMP
wraps the dense part in DDP with broadcast_buffers=False, and a rank-local statistic would
silently give each rank its own weights.
"""

from __future__ import annotations

import torch
from torch import nn

from dmmp_rec.config.model import LossConfig
from dmmp_rec.model.weighting_base import DistillWarmup, LossReducer, LossWeighting


class UncertaintyWeighting(LossWeighting):
    """Kendall et al. 2018: L = sum_k exp(-s_k) L_k + s_k with learnable log-variances s_k.

    Its optimum is exp(-s_k) = 1 / L_k: a term whose loss has a floor of 0 (distillation KLs) or
    is tiny (rare-event BCEs) gets a weight that grows without bound (docs/model.md).

    Args:
        terms (tuple[str, ...]): the loss terms, in the order weights are reported.
        warmup (DistillWarmup): the schedule of the distillation terms' multiplier.
        init (float): every s_k's initial value (`model.loss.uncertainty_init`; 0: weight 1).
        reduce_losses (LossReducer | None): unused by this scheme (no statistics); kept so
            every scheme is built alike.
    """

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
    (warm-up included); the scale m_k is reported beside it.

    Args:
        terms (tuple[str, ...]): the loss terms, in the order weights are reported.
        warmup (DistillWarmup): the schedule of the distillation terms' multiplier.
        init (float): every s_k's initial value (`model.loss.uncertainty_init`).
        decay (float): d, the running scale's decay per step (`model.loss.scale_decay`).
        reduce_losses (LossReducer | None): averages a detached loss vector over the ranks, so
            the statistics are the same on every rank; None: this process's own losses.
    """

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
    than it is weighted up.

    Args: as `ScaledWeighting` (the same parameters and statistics).
    """

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
    """Constant weights from the config (1 for a term it does not name).

    Args:
        terms (tuple[str, ...]): the loss terms, in the order weights are reported.
        warmup (DistillWarmup): the schedule of the distillation terms' multiplier.
        weights (dict[str, float]): `model.loss.fixed_weights`, term -> weight.
        reduce_losses (LossReducer | None): unused (no statistics); kept so every scheme is
            built alike.
    """

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
    they accumulate rank-averaged losses, so every rank has the same weights.

    Args:
        terms (tuple[str, ...]): the loss terms, in the order weights are reported.
        warmup (DistillWarmup): the schedule of the distillation terms' multiplier.
        temperature (float): T of the softmax (`model.loss.dwa_temperature`).
        window (int): steps per window (`model.loss.dwa_window`).
        reduce_losses (LossReducer | None): averages a detached loss vector over the ranks, so
            the statistics are the same on every rank; None: this process's own losses.
    """

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
