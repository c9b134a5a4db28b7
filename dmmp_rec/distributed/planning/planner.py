"""Plan how DMMP's embedding tables are sharded: constraints + topology -> EmbeddingShardingPlanner.

The planner runs offline: it needs no process group and no GPU, so a plan for a 64-GPU cluster is
made on a laptop from the job config and a plan config (configs/plans/*.yaml). Every way a plan
can be unusable (tables that do not fit, constraint keys naming no table, a plan config made for
another world size or device) raises PlanError before any training starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.fbgemm_qcomm_codec import (
    CommType,
    QCommsConfig,
    get_qcomm_codecs_registry,
)
from torchrec.distributed.planner import EmbeddingShardingPlanner
from torchrec.distributed.planner.enumerators import EmbeddingEnumerator
from torchrec.distributed.planner.stats import EmbeddingStats
from torchrec.distributed.planner.storage_reservations import HeuristicalStorageReservation
from torchrec.distributed.planner.types import (
    ParameterConstraints,
    PlannerError,
    PlannerErrorType,
    Stats,
    Storage,
    Topology,
)
from torchrec.distributed.types import ModuleSharder, ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.planning.config import (
    GIB,
    CommsConfig,
    PlanConfig,
    PlanError,
    comms_problem,
)
from dmmp_rec.distributed.planning.constraints import parameter_constraints
from dmmp_rec.distributed.planning.result import (
    CaptureStats,
    PlanResult,
    RankStats,
    TableDecision,
    does_not_fit,
    rank_stats,
    table_decisions,
)
from dmmp_rec.distributed.planning.topology import (
    HbmCap,
    build_topology,
    check_job_matches,
    hbm_cap,
    local_gpu_properties,
)
from dmmp_rec.model.sparse import EBC_PATH

__all__ = [
    "PlanError",
    "PlanResult",
    "PlanningModel",
    "RankStats",
    "TableDecision",
    "make_plan",
]


class PlanningModel(nn.Module):
    """A stand-in with DMMP's embedding layout (the EBC at `EBC_PATH`, on meta), for planning.

    Row-wise Adagrad is attached in backward, as training does, so that the planner counts the
    optimizer state of every table.

    Args:
        cfg: the job config (its embedding tables and embedding learning rate).
    """

    def __init__(self, cfg: DmmpConfig) -> None:
        super().__init__()
        ebc = EmbeddingBagCollection(
            tables=cfg.features.embedding_bag_configs(), device=torch.device("meta")
        )
        apply_optimizer_in_backward(
            RowWiseAdagrad, ebc.parameters(), {"lr": cfg.train.embedding_lr}
        )
        holder: nn.Module = self
        *parents, leaf = EBC_PATH.split(".")
        for name in parents:
            holder.add_module(name, nn.Module())
            holder = holder.get_submodule(name)
        holder.add_module(leaf, ebc)


def make_sharders(
    cfg: DmmpConfig, comms: CommsConfig | None = None, device: str = "cpu"
) -> list[ModuleSharder[nn.Module]]:
    """The EBC sharder with the fused row-wise Adagrad training uses, and the plan config's
    quantized comms (`comms`) as torchrec qcomm codecs for `device`'s backend, so the planner
    prices the same kernels and comms the job runs.

    Args:
        cfg: the job config (the embedding learning rate).
        comms: the plan config's comms precisions (None or fp32: plain comms).
        device: "cpu" or "cuda", the backend the codecs are for.

    Returns:
        A one-element list: the EmbeddingBagCollectionSharder.

    Raises:
        PlanError: quantized comms the backend does not support.
    """
    fused = {
        "optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
        "learning_rate": cfg.train.embedding_lr,
    }
    registry = None
    if comms is not None and comms.quantized:
        problem = comms_problem(comms, device)
        if problem is not None:
            raise PlanError(f"comms: {problem}")
        qcomms = QCommsConfig(
            forward_precision=CommType(comms.forward_precision),
            backward_precision=CommType(comms.backward_precision),
        )
        registry = get_qcomm_codecs_registry(qcomms, device=torch.device(device))
    return [EmbeddingBagCollectionSharder(fused_params=fused, qcomm_codecs_registry=registry)]


def plan_assumptions(plan_cfg: PlanConfig, hbm: HbmCap | None) -> dict[str, Any]:
    """What a plan assumed beyond its shards, for its JSON's meta: the memory per GPU and where
    that figure came from (cuda), and the quantized comms (when not fp32).

    Args:
        plan_cfg: the plan config the plan was made with.
        hbm: the memory per GPU the plan assumed (None on cpu).

    Returns:
        The meta entries: `comms`, `hbm_cap_gb` and `hbm_cap_source`, each only when it applies.
    """
    facts: dict[str, Any] = {}
    if plan_cfg.comms.quantized:
        facts["comms"] = plan_cfg.comms.to_dict()
    if hbm is not None:
        facts.update(hbm_cap_gb=round(hbm.bytes / GIB, 3), hbm_cap_source=hbm.source)
    return facts


def _check_job(device: str, world_size: int, local_world_size: int | None) -> None:
    if device not in ("cpu", "cuda"):
        raise PlanError(f"device must be cpu or cuda, got {device!r}")
    if world_size < 1:
        raise PlanError(f"world size must be >= 1, got {world_size}")
    if local_world_size is not None and local_world_size < 1:
        raise PlanError(f"local world size must be >= 1, got {local_world_size}")


def _storage_reservation(plan_cfg: PlanConfig) -> HeuristicalStorageReservation:
    """The share of each device kept from the tables, and the dense part's estimate."""
    dense_gb = plan_cfg.topology.dense_reserve_gb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchrec's note on its dense heuristic
        return HeuristicalStorageReservation(
            percentage=plan_cfg.topology.reserve_fraction,
            dense_tensor_estimate=None if dense_gb is None else int(dense_gb * GIB),
        )


@dataclass
class _Planning:
    """One planner run's inputs, kept to explain a plan that does not fit."""

    plan_cfg: PlanConfig
    topology: Topology
    batch_size: int
    module: nn.Module
    sharders: list[ModuleSharder[nn.Module]]
    reservation: HeuristicalStorageReservation
    constraints: dict[str, ParameterConstraints]
    enumerator: EmbeddingEnumerator


def _run_planner(p: _Planning, stats: list[Stats], debug: bool) -> ShardingPlan:
    """torchrec's EmbeddingShardingPlanner on `p`; each way it fails becomes a PlanError."""
    planner = EmbeddingShardingPlanner(
        topology=p.topology,
        batch_size=p.batch_size,
        enumerator=p.enumerator,
        storage_reservation=p.reservation,
        constraints=p.constraints,
        stats=stats,
        debug=debug,
    )
    try:
        return planner.plan(p.module, p.sharders)
    except PlannerError as e:
        if e.error_type == PlannerErrorType.INSUFFICIENT_STORAGE:
            raise does_not_fit(
                e, p.enumerator, p.reservation, p.topology, p.module, p.sharders, p.plan_cfg
            ) from None
        raise PlanError(f"{p.plan_cfg.source}: the planner found no plan: {e}") from None
    except RuntimeError as e:  # the enumerator: a constraint leaves a table no option
        raise PlanError(f"{p.plan_cfg.source}: {e}") from None


def make_plan(
    cfg: DmmpConfig,
    plan_cfg: PlanConfig | None,
    world_size: int,
    device: str,
    module: nn.Module | None = None,
    torchrec_stats: bool = False,
    local_world_size: int | None = None,
    gpu_properties: Callable[[], Sequence[Any]] = local_gpu_properties,
) -> PlanResult:
    """Plan the embedding tables of `cfg` for `world_size` ranks on `device`, offline: no
    process group, no GPU (a 64-GPU plan is made on a laptop).

    Args:
        cfg: the job config (tables, batch size, embedding learning rate).
        plan_cfg: constraints, topology and comms (None: the defaults).
        world_size: the job's ranks.
        device: "cpu" or "cuda".
        module: the model to shard; the plan's module paths are relative to it (default: a
            PlanningModel with DMMP's layout).
        torchrec_stats: also log torchrec's own stats table.
        local_world_size: the job's ranks per host (a running job's, or --local-world-size).
        gpu_properties: lists the GPUs whose smallest memory each GPU gets on cuda without
            `topology.hbm_cap_gb` (default: torch's properties of this host's GPUs).

    Returns:
        The plan with its per-rank and per-table decisions and the plan file's meta.

    Raises:
        PlanError: the plan config does not suit the job, or the tables do not fit.
    """
    _check_job(device, world_size, local_world_size)
    plan_cfg = plan_cfg or PlanConfig()
    check_job_matches(plan_cfg, world_size, device, local_world_size)
    hbm = hbm_cap(plan_cfg, gpu_properties) if device == "cuda" else None
    topology = build_topology(plan_cfg, world_size, device, local_world_size, hbm)
    constraints = parameter_constraints(cfg, plan_cfg, topology)
    batch_size = plan_cfg.topology.batch_size or cfg.data.batch_size
    module = module if module is not None else PlanningModel(cfg)
    sharders = make_sharders(cfg, plan_cfg.comms, device)
    reservation = _storage_reservation(plan_cfg)
    enumerator = EmbeddingEnumerator(
        topology=topology, batch_size=batch_size, constraints=constraints
    )
    planning = _Planning(
        plan_cfg, topology, batch_size, module, sharders, reservation, constraints, enumerator
    )
    capture = CaptureStats()
    stats: list[Stats] = [capture, EmbeddingStats()] if torchrec_stats else [capture]
    plan = _run_planner(planning, stats, torchrec_stats)
    return _plan_result(cfg, planning, plan, capture, world_size, device, hbm)


def _plan_result(
    cfg: DmmpConfig,
    p: _Planning,
    plan: ShardingPlan,
    capture: CaptureStats,
    world_size: int,
    device: str,
    hbm: HbmCap | None,
) -> PlanResult:
    """The plan with what the planner decided per table and rank, and the plan file's meta."""
    dense = p.reservation._dense_storage or Storage(0, 0, 0)  # noqa: SLF001 (no public getter)
    kjt = p.reservation._kjt_storage or Storage(0, 0, 0)  # noqa: SLF001
    tables = table_decisions(capture.best_plan)
    return PlanResult(
        plan=plan,
        world_size=world_size,
        local_world_size=p.topology.local_world_size,
        device=device,
        batch_size=p.batch_size,
        ranks=rank_stats(capture.best_plan, p.topology, dense, kjt),
        tables=tables,
        dense_reserved=dense,
        kjt_reserved=kjt,
        reserve_fraction=p.plan_cfg.topology.reserve_fraction,
        num_proposals=capture.num_proposals,
        meta={
            "world_size": world_size,
            "local_world_size": p.topology.local_world_size,
            "device": device,
            "batch_size": p.batch_size,
            "config": cfg.source,
            "plan_config": p.plan_cfg.source,
            "tables": [t.name for t in tables],
            **plan_assumptions(p.plan_cfg, hbm),
        },
    )
