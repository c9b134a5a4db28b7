"""Build the configured model: DMMP or a baseline, on the devices the trainer asks for."""

from __future__ import annotations

import torch

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.precision import PRECISION_DTYPES
from dmmp_rec.model.sparse import SharedSparseArch
from dmmp_rec.model.weighting_base import LossReducer


def build_model(
    cfg: DmmpConfig,
    device: torch.device | str = "cpu",
    sparse_device: torch.device | str | None = None,
    reduce_losses: LossReducer | None = None,
) -> DMMPModel:
    """The model of `cfg.model`, DMMP or a baseline, with everything it needs given here.

    Args:
        cfg: the job's config (features, model, `train.precision` for the autocast dtype).
        device: where the dense part (and the managed-id remappers) live; "meta" puts
            everything on meta, and DMP then re-initialises every module through its
            reset_parameters.
        sparse_device: where the EBC is built (default `device`); pass "meta" and let
            DistributedModelParallel materialise the shards.
        reduce_losses: averages the loss weighting's statistics over the ranks
            (`distributed.collectives.rank_mean` under DMP); None for one process.

    Returns:
        The unsharded DMMPModel.
    """
    item_specs = cfg.features.group("item")
    id_spec = item_specs[0]
    if cfg.model.student.in_batch_negatives and id_spec.multi_valued:
        raise ValueError(
            f"features.item.0 ({id_spec.name}) must be single-valued: in-batch negatives use the "
            "first item feature as the item's identity (or set "
            "model.student.in_batch_negatives=false)"
        )
    sparse = SharedSparseArch(
        cfg.features,
        sparse_device if sparse_device is not None else device,
        candidates=cfg.cross_candidates,
        managed_device=device,
    )
    with torch.device(device):
        dense = DenseArch(sparse.group_dims, cfg.model, reduce_losses)
    dense.autocast_dtype = PRECISION_DTYPES[cfg.train.precision]  # training's forward only
    return DMMPModel(sparse, dense, id_spec.name)
