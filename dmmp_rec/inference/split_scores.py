"""Per-impression labels and model outputs of a labelled split, each rank scoring its share.

Training's validation and evaluation both need them, so they live below both. The loader without
drop_last gives every rank the same number of non-empty batches, so DMP's collectives stay
matched; `collectives.gather_rows` joins the ranks' rows in rank order (the split's file order).
The ground-truth keys (ids, hour) are the columns `data.catalogue.truth_keys` names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.catalogue import truth_keys

if TYPE_CHECKING:
    from dmmp_rec.model.dmmp import DMMPModel


@torch.no_grad()
def score_rows(
    model: nn.Module,
    batches: Iterable[Batch],
    features: FeaturesConfig,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """This rank's labels, model outputs and ground-truth keys of every row of its batches.

    `score` runs the sharded EBC: scoring only, no candidates or losses.

    Args:
        model: the DistributedModelParallel or a DMMPModel.
        batches: this rank's batches of a labelled split (a loader without drop_last).
        features: the job's features (which columns are the user id, item id and hour).
        device: where the model runs.

    Returns:
        {column: [rows] array}: user_id, item_id (and hour, when the config has it), click,
        conversion and every row score of the model's output.
    """
    keys = truth_keys(features)
    cols: dict[str, list[np.ndarray]] = {}
    scorer = cast("DMMPModel", getattr(model, "module", model))

    def add(name: str, value: torch.Tensor) -> None:
        cols.setdefault(name, []).append(value.detach().cpu().numpy().reshape(-1))

    for batch in batches:
        jts = batch.features.to_dict()
        for name, key in keys.items():
            add(name, jts[key].values())
        batch = batch.to(device)
        out = scorer.score(batch)
        add("click", batch.click)
        add("conversion", batch.conversion)
        for key, value in out.row_scores().items():
            add(key, value.float())
    return {k: np.concatenate(v) for k, v in cols.items()}
