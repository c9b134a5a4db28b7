"""Build the configured model: DMMP or a baseline, on the devices the trainer asks for."""

from __future__ import annotations

import torch

from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.precision import PRECISION_DTYPES
from dmmp_rec.model.sparse import SharedSparseArch


def build_model(
    cfg: DmmpConfig,
    device: torch.device | str = "cpu",
    sparse_device: torch.device | str | None = None,
) -> DMMPModel:
    """The model of `cfg.model`. The EBC is built on `sparse_device` (default `device`); pass
    "meta" there and let DistributedModelParallel materialise the shards. `device="meta"` puts
    everything on meta; DMP then re-initialises every module through its reset_parameters."""
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
        dense = DenseArch(sparse.group_dims, cfg.model)
    dense.autocast_dtype = PRECISION_DTYPES[cfg.train.precision]  # training's forward only
    return DMMPModel(sparse, dense, id_spec.name)
