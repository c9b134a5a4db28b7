"""torch-rechub 0.9.0 (the library a user would pick instead) in the training benchmark.

The models are built by the comparison's adapter (dmmp_rec/compare/rechub/models.py, one copy):
our features at one embedding width (torch-rechub concatenates the per-feature embeddings, so
every feature gets the mean of our widths, `uniform_dim`), our MLP widths (the `ours` recipes),
torch-rechub's input format (a LongTensor per single-valued feature, a padded [B, L] one per
multi-valued feature, padding id = cardinality, masked by torch-rechub). What the benchmark
adds is the step: its PLE is trained with entire-space ESMM losses (pCTCVR = pCTR * pCVR over
all impressions), its DSSM with the point-wise click loss; the optimiser is Adam over every
parameter, as torch-rechub's trainers use it (its embeddings are dense nn.Embedding tables).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dmmp_rec.compare.rechub.models import RechubPeer, input_specs, kjt_to_inputs
from dmmp_rec.compare.rechub.recipes import RechubRecipe
from dmmp_rec.compare.rechub.train import optimizer_setup
from dmmp_rec.config import DmmpConfig
from dmmp_rec.data.batch import Batch

Kind = Literal["ple_esmm", "dssm"]

# our widths, Adam at train.dense_lr without weight decay (the benchmark's optimiser)
BENCH_RECIPES: dict[str, RechubRecipe] = {
    "ple_esmm": RechubRecipe("rechub_ple_esmm", "ple", "ours", None, "adam", None, 0.0),
    "dssm": RechubRecipe("rechub_dssm_pointwise", "dssm", "ours", None, "adam", None, 0.0),
}


class RechubBatch:
    """A Batch in torch-rechub's input format (padded history lists)."""

    def __init__(self, batch: Batch, cfg: DmmpConfig) -> None:
        self.x = kjt_to_inputs(batch.features, input_specs(cfg))
        self.click = batch.click
        self.conversion = batch.conversion
        self.size = batch.size


class RechubModel(nn.Module):
    """`forward(batch) -> (loss, outputs)` around the adapter's PLE (ESMM losses) or DSSM."""

    def __init__(self, cfg: DmmpConfig, kind: Kind) -> None:
        super().__init__()
        if kind not in BENCH_RECIPES:
            raise ValueError(f"unknown rechub model {kind!r}; known: {', '.join(BENCH_RECIPES)}")
        self.kind = kind
        self.peer = RechubPeer(BENCH_RECIPES[kind], cfg)
        self.net = self.peer.model

    def forward(self, batch: RechubBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y = self.net(batch.x)
        if self.kind == "ple_esmm":
            pctr, pcvr = y[:, 0], y[:, 1]
            pctcvr = pctr * pcvr
            loss = F.binary_cross_entropy(pctr, batch.click) + F.binary_cross_entropy(
                pctcvr, batch.click * batch.conversion
            )
            return loss, {"pctr": pctr.detach(), "pctcvr": pctcvr.detach()}
        loss = F.binary_cross_entropy(y, batch.click)
        return loss, {"score": y.detach()}


def rechub_optimizer(model: RechubModel, cfg: DmmpConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser (Adam over every parameter) through the comparison's setup."""
    optimizer_fn, params = optimizer_setup(model.peer, cfg)
    return optimizer_fn(model.parameters(), **params)
