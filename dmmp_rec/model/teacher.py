"""The teacher: a multi-task ranker with entire-space (ESMM) CTR and CVR heads.

pCTCVR = pCTR * pCVR is trained on every impression, so CVR is learned over the entire space
instead of on clicked rows alone; pCTCVR <= pCTR holds by construction.

The input is a concatenation of named blocks (the feature groups, e.g. user, item, context).
The first layers (every layer that reads the input: the extractor's `input_layers()`) are
linear in it, so their pre-activations are a sum over blocks of each block's product with its
columns of the stacked weight (`FirstLayer.partial`). Scoring many (row, candidate) pairs then
costs one product per row for the blocks a row's pairs share and one per distinct value of the
others, not one full first layer per pair (`score_pairs`, candidates.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dmmp_rec.config.model import TeacherConfig
from dmmp_rec.model.experts import PLE, MMoE, SharedBottom
from dmmp_rec.model.mlp import MLP
from dmmp_rec.model.precision import compute_dtype

SINGLE_BLOCK = "input"  # the block name of a teacher built from a plain width


class TeacherOutput(NamedTuple):
    logit_ctr: torch.Tensor  # [B]
    logit_cvr: torch.Tensor  # [B]
    pctr: torch.Tensor  # [B]
    pcvr: torch.Tensor  # [B]
    pctcvr: torch.Tensor  # [B]


def build_extractor(
    in_dim: int, cfg: TeacherConfig, device: torch.device | str | None
) -> PLE | MMoE | SharedBottom:
    """The multi-task body named by `cfg.kind`, with two tasks (CTR and CVR).

    Args:
        in_dim (int): width of the teacher input, D.
        cfg (TeacherConfig): model.teacher (kind, experts, levels, expert_dims).
        device (torch.device | str | None): where the parameters are created.

    Returns:
        PLE | MMoE | SharedBottom: PLE for "ple", MMoE with as many experts as the CGC would
        have for "mmoe", SharedBottom for "shared_bottom".
    """
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


class _BlockProduct(torch.autograd.Function):
    """sum_b x_b W[:, cols_b]^T, reading W's column blocks in place (no copy of them); the
    backward writes each block's weight gradient straight into its rows of one [D, F] buffer
    (zeros only where no block reads)."""

    @staticmethod
    def forward(ctx, weight, cols, *xs):  # noqa: ANN001, ANN205
        lead = xs[0].shape[:-1]
        dtype = compute_dtype(weight)  # bf16 under train.precision=bf16's autocast
        ctx.dtypes = (weight.dtype, [x.dtype for x in xs])
        weight = weight.to(dtype)
        flat = [x.reshape(-1, x.shape[-1]).to(dtype) for x in xs]
        out = flat[0] @ weight[:, cols[0]].T
        for x, c in zip(flat[1:], cols[1:], strict=True):
            torch.addmm(out, x, weight[:, c].T, out=out)  # in place; counted as addmm
        ctx.cols = cols
        ctx.save_for_backward(weight, *flat)
        return out.reshape(*lead, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        weight, *flat = ctx.saved_tensors
        weight_dtype, x_dtypes = ctx.dtypes
        g = grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
        grads_x: list[torch.Tensor | None] = []
        for i, c in enumerate(ctx.cols):
            need = ctx.needs_input_grad[2 + i]
            gx = (g @ weight[:, c]).reshape(*grad.shape[:-1], -1).to(x_dtypes[i]) if need else None
            grads_x.append(gx)
        grad_w = None
        if ctx.needs_input_grad[0]:
            covered = sum(c.stop - c.start for c in ctx.cols)
            make = torch.empty if covered == weight.shape[1] else torch.zeros
            grad_wt = make(weight.shape[1], weight.shape[0], dtype=g.dtype, device=g.device)
            for x, c in zip(flat, ctx.cols, strict=True):
                torch.mm(x.T, g, out=grad_wt[c])
            grad_w = grad_wt.T.to(weight_dtype)
        return (grad_w, None, *grads_x)


class FirstLayer(NamedTuple):
    """Every first layer of the teacher stacked into one [F, D] weight and [F] bias, and the
    columns each named input block occupies."""

    weight: torch.Tensor
    bias: torch.Tensor
    columns: Mapping[str, slice]

    def partial(self, blocks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The named blocks' share of every first-layer pre-activation, without the bias.

        sum_b x_b W[:, cols_b]^T, reading W's column blocks in place.

        Args:
            blocks (Mapping[str, torch.Tensor]): block name -> [..., width_b], same leading shape;
                an unknown name raises KeyError, a wrong width ValueError.

        Returns:
            torch.Tensor: [..., F].
        """
        names = list(blocks)
        for name in names:
            if name not in self.columns:
                known = ", ".join(self.columns)
                raise KeyError(f"teacher input has no block {name!r}; its blocks: {known}")
            width = self.columns[name].stop - self.columns[name].start
            if blocks[name].shape[-1] != width:
                raise ValueError(
                    f"teacher block {name!r} is {width} wide, got {tuple(blocks[name].shape)}"
                )
        cols = tuple(self.columns[n] for n in names)
        return _BlockProduct.apply(self.weight, cols, *(blocks[n] for n in names))

    def detach(self) -> FirstLayer:
        """The same layer without gradient (to score candidate pairs under no_grad).

        Returns:
            FirstLayer: weight and bias detached, same columns.
        """
        return FirstLayer(self.weight.detach(), self.bias.detach(), self.columns)


class Teacher(nn.Module):
    """Extractor -> CTR tower and CVR tower -> entire-space probabilities.

    Args:
        blocks (int | Mapping[str, int]): the input's named blocks and widths in concatenation
            order (a plain width is one block named "input").
        cfg (TeacherConfig): the teacher section (extractor kind, experts, towers).
        device (torch.device | str | None): where the parameters are created.
    """

    def __init__(
        self,
        blocks: int | Mapping[str, int],
        cfg: TeacherConfig,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        widths = {SINGLE_BLOCK: blocks} if isinstance(blocks, int) else dict(blocks)
        self.columns: dict[str, slice] = {}
        start = 0
        for name, width in widths.items():
            self.columns[name] = slice(start, start + width)
            start += width
        self.extractor = build_extractor(start, cfg, device)
        width = self.extractor.out_dim
        self.ctr_tower = MLP(width, cfg.tower_dims, out_dim=1, device=device)
        self.cvr_tower = MLP(width, cfg.tower_dims, out_dim=1, device=device)
        self.first_widths = [layer.out_features for layer in self.extractor.input_layers()]

    def first_layer(self) -> FirstLayer:
        """Every first layer of the extractor stacked into one weight.

        Rebuilt per call from the layers' own parameters, so gradients and checkpoints stay theirs.

        Returns:
            FirstLayer: [F, D] weight, [F] bias and each block's columns.
        """
        layers = self.extractor.input_layers()
        weight = torch.cat([layer.weight for layer in layers])
        bias = torch.cat([layer.bias for layer in layers])
        return FirstLayer(weight, bias, self.columns)

    def forward(self, x: torch.Tensor) -> TeacherOutput:
        """The teacher on its concatenated input.

        Args:
            x (torch.Tensor): the blocks concatenated in `columns` order, [B, D].

        Returns:
            TeacherOutput: logits and entire-space probabilities, [B] each.
        """
        first = self.first_layer()
        return self.from_first_layer(F.linear(x, first.weight, first.bias))

    def from_first_layer(self, pre: torch.Tensor) -> TeacherOutput:
        """The teacher from its first layers' pre-activations (bias included).

        Args:
            pre (torch.Tensor): [..., F], F = sum of the first layers' widths.

        Returns:
            TeacherOutput: outputs with the leading shape of `pre`.
        """
        lead = pre.shape[:-1]
        parts = pre.reshape(-1, pre.shape[-1]).split(self.first_widths, dim=-1)
        h_ctr, h_cvr = self.extractor.forward_first(list(parts))
        logit_ctr = self.ctr_tower(h_ctr).reshape(lead)
        logit_cvr = self.cvr_tower(h_cvr).reshape(lead)
        pctr = torch.sigmoid(logit_ctr)
        pcvr = torch.sigmoid(logit_cvr)
        return TeacherOutput(logit_ctr, logit_cvr, pctr, pcvr, pctr * pcvr)

    def score_pairs(
        self,
        row_blocks: Mapping[str, torch.Tensor],
        pair_blocks: Mapping[str, torch.Tensor],
        first: FirstLayer | None = None,
    ) -> TeacherOutput:
        """Each row's R pairs, the row blocks' first-layer products computed once per row.

        Args:
            row_blocks (Mapping[str, torch.Tensor]): blocks all of a row's pairs share, [B, w] each
                (e.g. user and context).
            pair_blocks (Mapping[str, torch.Tensor]): blocks that differ per pair, [R, B, w] each
                (e.g. the candidate item, the pair's cross features); with `row_blocks` they must
                name every block (KeyError otherwise).
            first (FirstLayer | None): the first layer to use (e.g. detached); None:
                `first_layer()`.

        Returns:
            TeacherOutput: outputs of shape [R, B].
        """
        missing = set(self.columns) - set(row_blocks) - set(pair_blocks)
        if missing:
            raise KeyError(f"score_pairs: no values for teacher blocks {sorted(missing)}")
        first = self.first_layer() if first is None else first
        per_row = first.partial(row_blocks) + first.bias
        return self.from_first_layer(per_row.unsqueeze(0) + first.partial(pair_blocks))
