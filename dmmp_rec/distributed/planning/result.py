"""What a plan says: the chosen options per table and the estimated memory and step time per
rank (captured from the planner's Stats), and, when no plan fits, the memory account that says
how much is needed against what each rank has."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torchrec.distributed.planner.enumerators import EmbeddingEnumerator
from torchrec.distributed.planner.storage_reservations import HeuristicalStorageReservation
from torchrec.distributed.planner.types import (
    Perf,
    PlannerError,
    ShardingOption,
    Stats,
    Storage,
    Topology,
)
from torchrec.distributed.types import ModuleSharder, ShardingPlan

from dmmp_rec.distributed.planning.config import GIB, PlanConfig, PlanError


@dataclass
class RankStats:
    """One rank's estimated memory (bytes) and embedding time per step (ms)."""

    rank: int
    hbm_used: int  # sharded tables + dense + KJT reservations, like torchrec's stats
    ddr_used: int
    hbm_cap: int
    ddr_cap: int
    num_shards: int
    fwd_compute_ms: float
    fwd_comms_ms: float
    bwd_compute_ms: float
    bwd_comms_ms: float
    prefetch_compute_ms: float

    @property
    def total_ms(self) -> float:
        return (
            self.fwd_compute_ms
            + self.fwd_comms_ms
            + self.bwd_compute_ms
            + self.bwd_comms_ms
            + self.prefetch_compute_ms
        )


@dataclass
class TableDecision:
    """How one table was sharded, with its estimated total memory over all its shards."""

    name: str
    rows: int
    dim: int
    sharding_type: str
    compute_kernel: str
    ranks: list[int]
    shard_sizes: list[list[int]]
    hbm_bytes: int
    ddr_bytes: int
    caching_ratio: float | None


@dataclass
class PlanResult:
    """The planner's ShardingPlan and the statistics behind it."""

    plan: ShardingPlan
    world_size: int
    local_world_size: int
    device: str
    batch_size: int
    ranks: list[RankStats]
    tables: list[TableDecision]
    dense_reserved: Storage  # per rank, kept out of the tables' budget
    kjt_reserved: Storage
    reserve_fraction: float
    num_proposals: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def step_time_ms(self) -> float:
        """Estimated embedding time of one step: the slowest rank's forward + backward."""
        return max(r.total_ms for r in self.ranks)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]


class CaptureStats(Stats):
    """A Stats that keeps the chosen ShardingOptions (with per-shard storage and perf)."""

    def __init__(self) -> None:
        self.best_plan: list[ShardingOption] = []
        self.num_proposals = 0

    def log(
        self,
        sharding_plan: ShardingPlan,
        topology: Topology,
        batch_size: int,
        storage_reservation: Any,
        num_proposals: int,
        num_plans: int,
        run_time: float,
        best_plan: list[ShardingOption],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Keep the chosen ShardingOptions and the proposal count (torchrec's Stats hook).

        Args:
            sharding_plan (ShardingPlan): the plan (unused: the options carry more).
            topology (Topology): the cluster (unused).
            batch_size (int): per-rank batch size (unused).
            storage_reservation (Any): the planner's reservation (unused).
            num_proposals (int): proposals the planner tried; kept.
            num_plans (int): plans it found (unused).
            run_time (float): planning time (unused).
            best_plan (list[ShardingOption]): the chosen options, per table; kept.
            *args: further positional arguments of newer torchrec versions (ignored).
            **kwargs: further keyword arguments (ignored).
        """
        self.best_plan = list(best_plan)
        self.num_proposals = num_proposals


def rank_stats(
    best_plan: list[ShardingOption], topology: Topology, dense: Storage, kjt: Storage
) -> list[RankStats]:
    """Each rank's estimated memory and step time under the chosen plan.

    Args:
        best_plan (list[ShardingOption]): the chosen options (CaptureStats.best_plan).
        topology (Topology): the cluster (each rank's caps).
        dense (Storage): per-rank storage reserved for the dense part, added to each rank.
        kjt (Storage): per-rank storage reserved for the input KJTs, added to each rank.

    Returns:
        list[RankStats]: one per rank, in rank order: memory used and capacity in bytes, shard
        count, and forward / backward compute and comms time in ms.
    """
    used = [Storage(0, 0, 0) for _ in range(topology.world_size)]
    perf = [Perf(0.0, 0.0, 0.0, 0.0) for _ in range(topology.world_size)]
    shards: dict[int, int] = defaultdict(int)
    for option in best_plan:
        for shard in option.shards:
            rank = int(shard.rank if shard.rank is not None else -1)
            used[rank] += shard.storage or Storage(0, 0, 0)
            perf[rank] += shard.perf or Perf(0.0, 0.0, 0.0, 0.0)
            shards[rank] += 1
    return [
        RankStats(
            rank=r,
            hbm_used=used[r].hbm + dense.hbm + kjt.hbm,
            ddr_used=used[r].ddr + dense.ddr + kjt.ddr,
            hbm_cap=topology.devices[r].storage.hbm,
            ddr_cap=topology.devices[r].storage.ddr,
            num_shards=shards[r],
            fwd_compute_ms=perf[r].fwd_compute,
            fwd_comms_ms=perf[r].fwd_comms,
            bwd_compute_ms=perf[r].bwd_compute,
            bwd_comms_ms=perf[r].bwd_comms,
            prefetch_compute_ms=perf[r].prefetch_compute,
        )
        for r in range(topology.world_size)
    ]


def table_decisions(best_plan: list[ShardingOption]) -> list[TableDecision]:
    """What the planner chose for each table.

    Args:
        best_plan (list[ShardingOption]): the chosen options (CaptureStats.best_plan).

    Returns:
        list[TableDecision]: per table: shape, sharding type, kernel, ranks, shard sizes,
        total HBM / DDR bytes and the caching ratio (fused_uvm_caching only, else None).
    """
    out = []
    for option in best_plan:
        total = sum((s.storage for s in option.shards if s.storage), Storage(0, 0, 0))
        out.append(
            TableDecision(
                name=option.name,
                rows=int(option.tensor.shape[0]),
                dim=int(option.tensor.shape[1]),
                sharding_type=option.sharding_type,
                compute_kernel=option.compute_kernel,
                ranks=sorted({int(s.rank) for s in option.shards if s.rank is not None}),
                shard_sizes=[list(s.size) for s in option.shards],
                hbm_bytes=total.hbm,
                ddr_bytes=total.ddr,
                caching_ratio=option.cache_load_factor
                if option.compute_kernel == "fused_uvm_caching"
                else None,
            )
        )
    return out


def _size(n: float) -> str:
    """Bytes as GiB, or MiB below 1 GiB so that small tables do not print as 0."""
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / 2**20:.2f} MiB"


def _cheapest_storage(
    enumerator: EmbeddingEnumerator, module: nn.Module, sharders: list[ModuleSharder[nn.Module]]
) -> dict[str, Storage]:
    """Per table, the storage of its cheapest allowed sharding option (the lower bound)."""
    least: dict[str, Storage] = {}
    for option in enumerator.enumerate(module=module, sharders=sharders):
        total = sum((s.storage for s in option.shards if s.storage), Storage(0, 0, 0))
        best = least.get(option.name)
        if best is None or (total.hbm, total.ddr) < (best.hbm, best.ddr):
            least[option.name] = total
    return least


def does_not_fit(
    err: PlannerError,
    enumerator: EmbeddingEnumerator,
    reservation: HeuristicalStorageReservation,
    topology: Topology,
    module: nn.Module,
    sharders: list[ModuleSharder[nn.Module]],
    plan_cfg: PlanConfig,
) -> PlanError:
    """Rephrase the planner's storage error as memory needed vs available per rank.

    Args:
        err (PlannerError): torchrec's error; its first line is quoted.
        enumerator (EmbeddingEnumerator): the planner's enumerator (each table's cheapest
            allowed option is the lower bound).
        reservation (HeuristicalStorageReservation): the reservation the planner used (what
            was left for the tables).
        topology (Topology): the cluster (each rank's caps).
        module (nn.Module): the model that was planned.
        sharders (list[ModuleSharder[nn.Module]]): the sharders it was planned with.
        plan_cfg (PlanConfig): the plan config (source and reserve_fraction, for the message).

    Returns:
        PlanError: one line naming the plan config, what is needed, what each rank has, the
        largest tables and what to change.
    """
    least = _cheapest_storage(enumerator, module, sharders)
    need = sum(least.values(), Storage(0, 0, 0))
    cap = topology.devices[0].storage
    reserved = reservation.last_reserved_topology
    n = topology.world_size
    gpu = topology.compute_device != "cpu"
    if reserved is not None:
        avail = reserved.devices[0].storage
        left = f"HBM {_size(avail.hbm)}, DDR {_size(avail.ddr)} are left for tables"
        left = left if gpu else f"DDR {_size(avail.ddr)} is left for tables"
    else:
        left = "nothing is left for tables after the dense/KJT/margin reservations"
    biggest = sorted(least.items(), key=lambda kv: -(kv[1].hbm + kv[1].ddr))[:3]
    largest = ", ".join(
        f"{k} {_size(v.hbm)} HBM + {_size(v.ddr)} DDR" if gpu else f"{k} {_size(v.ddr)}"
        for k, v in biggest
    )
    need_text = (
        f"HBM {_size(need.hbm)} + DDR {_size(need.ddr)} (~{_size(need.hbm / n)} HBM per rank)"
        if gpu
        else f"DDR {_size(need.ddr)} (~{_size(need.ddr / n)} per rank)"
    )
    cap_text = f"HBM {_size(cap.hbm)}, DDR {_size(cap.ddr)}" if gpu else f"DDR {_size(cap.ddr)}"
    fix = (
        "raise topology.hbm_cap_gb, add ranks, or allow fused_uvm_caching for the large tables"
        if gpu
        else "raise topology.ddr_cap_gb or add ranks"
    )
    return PlanError(
        f"{plan_cfg.source}: the tables do not fit on {n} x {topology.compute_device}: they need "
        f"at least {need_text}; each rank has {cap_text}, of which {left} "
        f"(reserve_fraction {plan_cfg.topology.reserve_fraction}). Largest tables: {largest}. "
        f"To fix: {fix}. [torchrec: {str(err).splitlines()[0].strip()}]"
    )
