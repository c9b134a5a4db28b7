"""Per-table ParameterConstraints from a plan config: constraint keys resolved to tables (feature
or table names), and the sharding types a table may take without ties that torchrec would break
differently in two processes. One of the planner's concepts, as in torchrec's planner package."""

from __future__ import annotations

from typing import Any

from torchrec.distributed.planner import ParameterConstraints
from torchrec.distributed.planner.constants import MIN_CW_DIM
from torchrec.distributed.planner.types import Topology
from torchrec.distributed.types import CacheAlgorithm, CacheParams, ShardingType

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.planning.config import (
    DEFAULT_KEY,
    PlanConfig,
    PlanError,
    TableConstraint,
    cpu_problem,
)

ALL_SHARDING_TYPES = [t.value for t in ShardingType]
CPU_SHARDING_TYPES = ["data_parallel", "table_wise", "column_wise"]
COLUMN_SPLITS = frozenset({"column_wise", "table_column_wise", "grid_shard"})
ONE_HOST_TWINS = {"table_row_wise": "row_wise", "table_column_wise": "column_wise"}


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


def parameter_constraints(
    cfg: DmmpConfig, plan_cfg: PlanConfig, topology: Topology
) -> dict[str, ParameterConstraints]:
    """torchrec ParameterConstraints for every table of the job, from the plan config.

    Unconstrained tables get one too: their sharding types without disguised duplicates, so
    the plan is the same in every process (see _sharding_types).

    Args:
        cfg (DmmpConfig): the job config (its features name the tables).
        plan_cfg (PlanConfig): the plan config; its table keys may be feature or table names.
        topology (Topology): the cluster; its device and hosts restrict the choices.

    Returns:
        dict[str, ParameterConstraints]: table name -> constraints, for every table.
    """
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
