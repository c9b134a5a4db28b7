"""Per-impression labels and model outputs of a labelled split, each rank scoring its share.

Training's validation and evaluation both need them, so they live below both. The loader without
drop_last gives every rank the same number of non-empty batches, so DMP's collectives stay
matched; `collectives.gather_rows` joins the ranks' rows in rank order (the split's file order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.catalogue import id_features

if TYPE_CHECKING:
    from dmmp_rec.model.dmmp import DMMPModel

# The synthetic world's hour feature (dmmp_rec.data.synthetic.features.KNOWN): the true pCTR
# depends on it, so the Bayes ceiling reads it per row when the config has it.
HOUR_FEATURE = "ctx_hour"


@torch.no_grad()
def score_rows(
    model: nn.Module,
    batches: Iterable[Batch],
    features: FeaturesConfig,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """This rank's labels, model outputs and (user id, item id, hour) of every row of
    `batches`; `model` is the DMP or a DMMPModel (`score` runs the sharded EBC: scoring only,
    no candidates or losses)."""
    user_key, item_key = id_features(features)
    keys = [user_key, item_key] + ([HOUR_FEATURE] if HOUR_FEATURE in features.names else [])
    cols: dict[str, list[np.ndarray]] = {}
    scorer = cast("DMMPModel", getattr(model, "module", model))

    def add(name: str, value: torch.Tensor) -> None:
        cols.setdefault(name, []).append(value.detach().cpu().numpy().reshape(-1))

    for batch in batches:
        jts = batch.features.to_dict()
        for key, name in zip(keys, ("user_id", "item_id", "hour"), strict=False):
            add(name, jts[key].values())
        batch = batch.to(device)
        out = scorer.score(batch)
        add("click", batch.click)
        add("conversion", batch.conversion)
        for key, value in out.row_scores().items():
            add(key, value.float())
    return {k: np.concatenate(v) for k, v in cols.items()}
