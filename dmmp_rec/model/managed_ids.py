"""Managed collisions for unbounded id spaces, on torchrec's own modules.

A feature with `ids: managed` keeps raw 64-bit ids in its KJT; this module remaps them to table
rows with torchrec's ManagedCollisionCollection of MCHManagedCollisionModules (one per table,
eviction by LFU, LRU or distance-LFU). An id gets a row of its own once admitted; ids not
admitted yet share the table's last row.

Why not torchrec's ShardedManagedCollisionEmbeddingBagCollection: on CPU it cannot run (the
EBC sharder offers row_wise only for cuda, torchrec/distributed/embedding_types.py:559, and with a
hand-made row_wise plan the first eviction calls fbgemm::reset_weight_momentum, which
fbgemm-gpu-cpu 1.8 has no CPU kernel for; torchrec/distributed/mc_embedding_modules.py:184). So
the remapping state here is replicated: in training every rank feeds the ids of the GLOBAL batch
(all ranks' ids, all-gathered in rank order) to the same modules, so all replicas take the same
admissions and evictions and stay equal without broadcasts; each rank then keeps its own ids'
rows. The shared EBC is sharded by DistributedModelParallel as before. The state is buffers
(`_mch_sorted_raw_ids`, `_mch_remapped_ids_mapping`, the policy's counters and the step), so it
is in every state_dict, DCP checkpoint and export, and it is the same at any world size.
Out of training (`eval()`) the modules only look ids up: nothing is admitted or evicted.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torchrec.modules.mc_modules import (
    DistanceLFU_EvictionPolicy,
    LFU_EvictionPolicy,
    LRU_EvictionPolicy,
    ManagedCollisionCollection,
    MCHEvictionPolicy,
    MCHManagedCollisionModule,
)
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from dmmp_rec.config.features import EvictionPolicyName, FeatureSpec

# where the remapper lives in DMMPModel (the shared sparse arch holds it at `managed`)
MANAGED_PATH = "sparse.managed"


def eviction_policy(name: EvictionPolicyName) -> MCHEvictionPolicy:
    """torchrec's MCH eviction policy of that name, with torchrec's defaults.

    Args:
        name (EvictionPolicyName): "lfu", "lru" or "distance_lfu" (any other name gives
            distance-LFU; the config admits only these three).

    Returns:
        MCHEvictionPolicy: a fresh policy object.
    """
    if name == "lfu":
        return LFU_EvictionPolicy()
    if name == "lru":
        return LRU_EvictionPolicy()
    return DistanceLFU_EvictionPolicy()


def managed_collection(
    specs: list[FeatureSpec], device: torch.device
) -> ManagedCollisionCollection:
    """One MCH module per managed table, sized to the table (its last row takes misses).

    Args:
        specs (list[FeatureSpec]): the features with `ids: managed`, one table each.
        device (torch.device): where the remapping buffers live.

    Returns:
        ManagedCollisionCollection: torchrec's collection over those tables.
    """
    tables = [s.embedding_bag_config() for s in specs]
    modules: dict[str, MCHManagedCollisionModule] = {
        s.table_name: MCHManagedCollisionModule(
            zch_size=s.cardinality,
            device=device,
            eviction_policy=eviction_policy(s.managed.eviction_policy),
            eviction_interval=s.managed.eviction_interval,
            name=s.table_name,
        )
        for s in specs
    }
    return ManagedCollisionCollection(managed_collision_modules=modules, embedding_configs=tables)  # type: ignore[arg-type]


def _gather_flat(local: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
    """Every rank's 1-d int64 tensor (sizes may differ), in rank order; `counts`, every rank's
    size when the caller knows them already, saves the exchange of sizes."""
    world = dist.get_world_size()
    if counts is None:
        size = torch.tensor([local.numel()], dtype=torch.int64, device=local.device)
        sizes = [torch.empty_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
    padded = local.new_zeros(max(counts))
    padded[: local.numel()] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [p[:c] for p, c in zip(parts, counts, strict=True)]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ManagedIds(nn.Module):
    """Remaps the managed features of a KJT (other keys pass through, in their order).

    Args:
        specs (list[FeatureSpec]): the features with `ids: managed`, one table each.
        device (torch.device | str): where the remapping buffers live; default "cpu".
    """

    def __init__(self, specs: list[FeatureSpec], device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.mcc = managed_collection(specs, torch.device(device))
        self.feature_names: list[str] = [s.name for s in specs]

    def forward(self, features: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """Remap the managed features' raw ids to table rows; other keys pass through unchanged.

        In training on more than one rank, every rank feeds the global batch (all ranks' ids) to
        the modules so that admissions and evictions stay equal on all replicas, and keeps its own
        rows. Out of training (`eval()`) ids are only looked up. A KJT holding only some managed
        features (one side's lookup) gets the others as empty bags for the remap.

        Args:
            features (KeyedJaggedTensor): raw ids; the managed keys hold 64-bit raw ids.

        Returns:
            KeyedJaggedTensor: the same keys in the same order, managed keys holding row indices.
        """
        jts = features.to_dict()
        names = [n for n in self.feature_names if n in jts]
        if names != self.feature_names:  # a lookup of one side only: fill the other side empty
            jts = {**jts, **{n: _empty_like(features) for n in self.feature_names if n not in jts}}
        mine = KeyedJaggedTensor.from_jt_dict({n: jts[n] for n in self.feature_names})
        if self.training and _distributed():
            remapped = self._remap_global(mine)
        else:
            remapped = self.mcc(mine).to_dict()
        out = {n: remapped[n] if n in remapped else jt for n, jt in jts.items()}
        return KeyedJaggedTensor.from_jt_dict({n: out[n] for n in features.keys()})

    def _remap_global(self, mine: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        """Feed the global batch to the modules (same updates on every rank), keep our rows."""
        keys = mine.keys()
        lengths = _gather_flat(mine.lengths().to(torch.int64))
        rank, world = dist.get_rank(), dist.get_world_size()
        per_rank = [ln.view(len(keys), -1) for ln in lengths]  # [keys, batch] per rank
        # the global KJT is key-major: for each key, every rank's values in rank order
        splits: list[list[int]] = torch.stack([ln.sum(dim=1) for ln in per_rank]).tolist()
        # the lengths say how many values each rank sends: no second exchange of sizes
        values = _gather_flat(mine.values().to(torch.int64), [sum(s) for s in splits])
        chunks = [v.split(s) for v, s in zip(values, splits, strict=True)]
        global_kjt = KeyedJaggedTensor(
            keys=keys,
            values=torch.cat([chunks[r][k] for k in range(len(keys)) for r in range(world)]),
            lengths=torch.cat([per_rank[r][k] for k in range(len(keys)) for r in range(world)]),
        )
        remapped = self.mcc(global_kjt).to_dict()
        out: dict[str, JaggedTensor] = {}
        for k, name in enumerate(keys):
            before = sum(splits[r][k] for r in range(rank))
            rows = remapped[name].values()[before : before + splits[rank][k]]
            out[name] = JaggedTensor(values=rows, lengths=per_rank[rank][k])
        return out

    def rows(self, feature: str, raw_ids: torch.Tensor) -> torch.Tensor:
        """The rows `raw_ids` of `feature` look up now, without admitting anything.

        Args:
            feature (str): a managed feature's name.
            raw_ids (torch.Tensor): raw 64-bit ids, any shape (flattened).

        Returns:
            torch.Tensor: one row index per id, [N]; ids not admitted get the table's last row.
        """
        was = self.training
        self.eval()
        try:
            n = raw_ids.numel()
            kjt = KeyedJaggedTensor.from_jt_dict(
                {f: _jt(raw_ids.reshape(-1), n if f == feature else 0) for f in self.feature_names}
            )
            return self.mcc(kjt)[feature].values()
        finally:
            self.train(was)


def _jt(values: torch.Tensor, take: int) -> JaggedTensor:
    """One id per row for the first `take` rows of `values`, empty bags after."""
    lengths = torch.zeros(values.numel(), dtype=torch.int32, device=values.device)
    lengths[:take] = 1
    return JaggedTensor(values=values[:take].to(torch.int64), lengths=lengths)


def _empty_like(features: KeyedJaggedTensor) -> JaggedTensor:
    return JaggedTensor(
        values=features.values().new_zeros(0),
        lengths=torch.zeros(features.stride(), dtype=torch.int32, device=features.device()),
    )
