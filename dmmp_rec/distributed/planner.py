"""Plan how DMMP's embedding tables are sharded: constraints + topology -> EmbeddingShardingPlanner.

The planner runs offline: it needs no process group and no GPU, so a plan for a 64-GPU cluster is
made on a laptop from the job config and a plan config (configs/plans/*.yaml). Every way a plan
can be unusable (tables that do not fit, constraint keys naming no table, a plan config made for
another world size or device) raises PlanError before any training starts.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.constants import MIN_CW_DIM
from torchrec.distributed.planner.enumerators import EmbeddingEnumerator
from torchrec.distributed.planner.stats import EmbeddingStats
from torchrec.distributed.planner.storage_reservations import HeuristicalStorageReservation
from torchrec.distributed.planner.types import (
    HardwareConfig,
    KernelConfig,
    Perf,
    PlannerError,
    PlannerErrorType,
    ShardingOption,
    Stats,
    Storage,
    Topology,
    TopologyFactory,
    TrainerConfig,
)
from torchrec.distributed.types import (
    CacheAlgorithm,
    CacheParams,
    ModuleSharder,
    ShardingPlan,
    ShardingType,
)
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.plan_config import (
    DEFAULT_KEY,
    GIB,
    PlanConfig,
    PlanError,
    TableConstraint,
    cpu_problem,
)

__all__ = [
    "PlanError",
    "PlanResult",
    "PlanningModel",
    "RankStats",
    "TableDecision",
    "make_plan",
]

ALL_SHARDING_TYPES = [t.value for t in ShardingType]
CPU_SHARDING_TYPES = ["data_parallel", "table_wise", "column_wise"]
COLUMN_SPLITS = frozenset({"column_wise", "table_column_wise", "grid_shard"})
ONE_HOST_TWINS = {"table_row_wise": "row_wise", "table_column_wise": "column_wise"}
GPUS_PER_HOST = 8


class _Sparse(nn.Module):
    def __init__(self, ebc: EmbeddingBagCollection) -> None:
        super().__init__()
        self.ebc = ebc


class PlanningModel(nn.Module):
    """A stand-in with DMMP's embedding layout (`sparse.ebc`, on meta), for planning only.

    Row-wise Adagrad is attached in backward, as training does, so that the planner counts the
    optimizer state of every table.
    """

    def __init__(self, cfg: DmmpConfig) -> None:
        super().__init__()
        ebc = EmbeddingBagCollection(
            tables=cfg.features.embedding_bag_configs(), device=torch.device("meta")
        )
        apply_optimizer_in_backward(
            RowWiseAdagrad, ebc.parameters(), {"lr": cfg.train.embedding_lr}
        )
        self.sparse = _Sparse(ebc)


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


class _CaptureStats(Stats):
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
        self.best_plan = list(best_plan)
        self.num_proposals = num_proposals


def make_sharders(cfg: DmmpConfig) -> list[ModuleSharder[nn.Module]]:
    """The EBC sharder with the fused row-wise Adagrad training uses."""
    fused = {
        "optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
        "learning_rate": cfg.train.embedding_lr,
    }
    return [EmbeddingBagCollectionSharder(fused_params=fused)]


def _resolve_table_keys(cfg: DmmpConfig, plan_cfg: PlanConfig) -> dict[str, TableConstraint]:
    """Map each table name to its constraint; plan keys may be feature or table names."""
    by_key = {s.name: s.table_name for s in cfg.features.all}
    by_key.update({s.table_name: s.table_name for s in cfg.features.all})
    named: dict[str, TableConstraint] = {}
    owner: dict[str, str] = {}
    for key, constraint in plan_cfg.tables.items():
        if key == DEFAULT_KEY:
            continue
        if key not in by_key:
            known = ", ".join(f"{s.table_name} ({s.name})" for s in cfg.features.all)
            raise PlanError(
                f"{plan_cfg.source}: tables.{key}: unknown table or feature {key!r}; "
                f"known tables (features): {known}"
            )
        table = by_key[key]
        if table in named:
            raise PlanError(
                f"{plan_cfg.source}: tables.{key}: table {table} is already constrained "
                f"by tables.{owner[table]}"
            )
        named[table], owner[table] = constraint, key
    default = plan_cfg.tables.get(DEFAULT_KEY)
    out = {}
    for spec in cfg.features.all:
        chosen = named.get(spec.table_name, default)
        if chosen is not None:
            out[spec.table_name] = chosen
    return out


def _sharding_types(
    dim: int, constraint: TableConstraint | None, device: str, one_host: bool
) -> list[str]:
    """The allowed sharding types, without choices that are another allowed choice in disguise.

    A column split of a table no wider than min_partition is one shard, rated exactly like
    table_wise; on one host, table_row_wise is row_wise. torchrec breaks such ties in set order,
    which depends on PYTHONHASHSEED, so two processes could pick different types. Dropping the
    disguised choice makes the plan the same in every process.
    """
    allowed: list[str] = (
        list(constraint.sharding_types) if constraint and constraint.sharding_types else []
    )
    allowed = allowed or list(CPU_SHARDING_TYPES if device == "cpu" else ALL_SHARDING_TYPES)
    drop: set[str] = set()
    min_partition = (constraint.min_partition if constraint else None) or MIN_CW_DIM
    if dim <= min_partition:
        drop |= COLUMN_SPLITS
    if one_host:
        drop |= {t for t, same in ONE_HOST_TWINS.items() if same in allowed}
    kept = [t for t in allowed if t not in drop]
    return kept or allowed


def _parameter_constraints(
    cfg: DmmpConfig, plan_cfg: PlanConfig, topology: Topology
) -> dict[str, ParameterConstraints]:
    """ParameterConstraints for every table (unconstrained tables too, see _sharding_types)."""
    resolved = _resolve_table_keys(cfg, plan_cfg)
    device = topology.compute_device
    one_host = topology.local_world_size >= topology.world_size
    out = {}
    for spec in cfg.features.all:
        table, c = spec.table_name, resolved.get(spec.table_name)
        if c is None:
            out[table] = ParameterConstraints(
                sharding_types=_sharding_types(spec.dim, None, device, one_host)
            )
            continue
        if device == "cpu" and (problem := cpu_problem(c)) is not None:
            raise PlanError(f"{plan_cfg.source}: constraint for {table}: {problem}")
        cache = None
        if c.caching_ratio is not None or c.cache_algorithm is not None:
            algorithm = CacheAlgorithm.LFU if c.cache_algorithm == "lfu" else CacheAlgorithm.LRU
            cache = CacheParams(algorithm=algorithm, load_factor=c.caching_ratio)
        kwargs: dict[str, Any] = {}
        if c.pooling_factor is not None:
            kwargs["pooling_factors"] = [c.pooling_factor]
        out[table] = ParameterConstraints(
            sharding_types=_sharding_types(spec.dim, c, device, one_host),
            compute_kernels=list(c.compute_kernels) if c.compute_kernels else None,
            min_partition=c.min_partition,
            cache_params=cache,
            **kwargs,
        )
    return out


def _gbs_to_bytes_per_ms(gbs: float | None) -> float | None:
    return None if gbs is None else gbs * GIB / 1000.0


def build_topology(
    plan_cfg: PlanConfig, world_size: int, device: str, local_world_size: int | None = None
) -> Topology:
    """The cluster of the plan config, for `world_size` ranks on `device`, via TopologyFactory.
    Ranks per host: the plan config's, else the job's `local_world_size`, else the world size
    on cpu and 8 on cuda."""
    topo = plan_cfg.topology
    per_host = (
        topo.local_world_size
        or local_world_size
        or (GPUS_PER_HOST if device == "cuda" else world_size)
    )
    local = min(per_host, world_size)  # fewer ranks than one host holds: one partial host
    if world_size % local != 0:
        raise PlanError(
            f"{plan_cfg.source}: topology.local_world_size: {world_size} ranks cannot be split "
            f"into hosts of {local}"
        )
    hardware = HardwareConfig(
        intra_host_bw=_gbs_to_bytes_per_ms(topo.intra_host_bw_gbs),
        inter_host_bw=_gbs_to_bytes_per_ms(topo.inter_host_bw_gbs),
    )
    custom_bw = topo.intra_host_bw_gbs is not None or topo.inter_host_bw_gbs is not None
    return TopologyFactory.create_topology(
        trainer_config=TrainerConfig(
            world_size=world_size,
            local_world_size=local,
            hbm_cap_bytes=None if topo.hbm_cap_gb is None else int(topo.hbm_cap_gb * GIB),
            ddr_cap_bytes=None if topo.ddr_cap_gb is None else int(topo.ddr_cap_gb * GIB),
        ),
        hardware_config=hardware,
        kernel_config=KernelConfig(compute_device=device, use_hardware_based_bandwidth=custom_bw),
    )


def _check_job_matches(
    plan_cfg: PlanConfig, world_size: int, device: str, local_world_size: int | None
) -> None:
    topo = plan_cfg.topology
    if (
        topo.local_world_size is not None
        and local_world_size is not None
        and min(topo.local_world_size, world_size) != local_world_size
    ):
        raise PlanError(
            f"{plan_cfg.source}: topology.local_world_size: the plan config is for "
            f"{topo.local_world_size} ranks per host but the job runs {local_world_size} per "
            "host; shards would be placed on GPUs this host does not have (override "
            "topology.local_world_size)"
        )
    if topo.world_size is not None and topo.world_size != world_size:
        raise PlanError(
            f"{plan_cfg.source}: topology.world_size: the plan config is for {topo.world_size} "
            f"ranks but the job has {world_size}; use a plan config for {world_size} ranks "
            "(or override topology.world_size)"
        )
    if topo.device is not None and topo.device != device:
        raise PlanError(
            f"{plan_cfg.source}: topology.device: the plan config is for {topo.device} "
            f"but the job runs on {device}"
        )


def _size(n: float) -> str:
    """Bytes as GiB, or MiB below 1 GiB so that small tables do not print as 0."""
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / 2**20:.2f} MiB"


def _does_not_fit(
    err: PlannerError,
    enumerator: EmbeddingEnumerator,
    reservation: HeuristicalStorageReservation,
    topology: Topology,
    module: nn.Module,
    sharders: list[ModuleSharder[nn.Module]],
    plan_cfg: PlanConfig,
) -> PlanError:
    """Rephrase the planner's storage error as memory needed vs available per rank."""
    least: dict[str, Storage] = {}  # per table, its cheapest allowed option
    for option in enumerator.enumerate(module=module, sharders=sharders):
        total = sum((s.storage for s in option.shards if s.storage), Storage(0, 0, 0))
        best = least.get(option.name)
        if best is None or (total.hbm, total.ddr) < (best.hbm, best.ddr):
            least[option.name] = total
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


def _rank_stats(
    best_plan: list[ShardingOption], topology: Topology, dense: Storage, kjt: Storage
) -> list[RankStats]:
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


def _table_decisions(best_plan: list[ShardingOption]) -> list[TableDecision]:
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


def make_plan(
    cfg: DmmpConfig,
    plan_cfg: PlanConfig | None,
    world_size: int,
    device: str,
    module: nn.Module | None = None,
    torchrec_stats: bool = False,
    local_world_size: int | None = None,
) -> PlanResult:
    """Plan the embedding tables of `cfg` for `world_size` ranks on `device` ("cpu" or "cuda").

    `module` is the model to shard (default: a PlanningModel with DMMP's layout); the plan's
    module paths are relative to it. `torchrec_stats` also logs torchrec's own stats table.
    `local_world_size` is the job's ranks per host (a running job's, or `--local-world-size`).
    Raises PlanError when the plan config does not suit the job or the tables do not fit.
    """
    if device not in ("cpu", "cuda"):
        raise PlanError(f"device must be cpu or cuda, got {device!r}")
    if world_size < 1:
        raise PlanError(f"world size must be >= 1, got {world_size}")
    plan_cfg = plan_cfg or PlanConfig()
    if local_world_size is not None and local_world_size < 1:
        raise PlanError(f"local world size must be >= 1, got {local_world_size}")
    _check_job_matches(plan_cfg, world_size, device, local_world_size)
    topology = build_topology(plan_cfg, world_size, device, local_world_size)
    constraints = _parameter_constraints(cfg, plan_cfg, topology)
    batch_size = plan_cfg.topology.batch_size or cfg.data.batch_size
    module = module if module is not None else PlanningModel(cfg)
    sharders = make_sharders(cfg)
    dense_gb = plan_cfg.topology.dense_reserve_gb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchrec's note on its dense heuristic
        reservation = HeuristicalStorageReservation(
            percentage=plan_cfg.topology.reserve_fraction,
            dense_tensor_estimate=None if dense_gb is None else int(dense_gb * GIB),
        )
    enumerator = EmbeddingEnumerator(
        topology=topology, batch_size=batch_size, constraints=constraints
    )
    capture = _CaptureStats()
    stats: list[Stats] = [capture, EmbeddingStats()] if torchrec_stats else [capture]
    planner = EmbeddingShardingPlanner(
        topology=topology,
        batch_size=batch_size,
        enumerator=enumerator,
        storage_reservation=reservation,
        constraints=constraints,
        stats=stats,
        debug=torchrec_stats,
    )
    try:
        plan = planner.plan(module, sharders)
    except PlannerError as e:
        if e.error_type == PlannerErrorType.INSUFFICIENT_STORAGE:
            raise _does_not_fit(
                e, enumerator, reservation, topology, module, sharders, plan_cfg
            ) from None
        raise PlanError(f"{plan_cfg.source}: the planner found no plan: {e}") from None
    except RuntimeError as e:  # the enumerator: a constraint leaves a table no option
        raise PlanError(f"{plan_cfg.source}: {e}") from None
    dense = reservation._dense_storage or Storage(0, 0, 0)  # noqa: SLF001 (no public getter)
    kjt = reservation._kjt_storage or Storage(0, 0, 0)  # noqa: SLF001
    tables = _table_decisions(capture.best_plan)
    return PlanResult(
        plan=plan,
        world_size=world_size,
        local_world_size=topology.local_world_size,
        device=device,
        batch_size=batch_size,
        ranks=_rank_stats(capture.best_plan, topology, dense, kjt),
        tables=tables,
        dense_reserved=dense,
        kjt_reserved=kjt,
        reserve_fraction=plan_cfg.topology.reserve_fraction,
        num_proposals=capture.num_proposals,
        meta={
            "world_size": world_size,
            "local_world_size": topology.local_world_size,
            "device": device,
            "batch_size": batch_size,
            "config": cfg.source,
            "plan_config": plan_cfg.source,
            "tables": [t.name for t in tables],
        },
    )
