"""The sharding plan a job trains with, and the sharders that realise it.

`sharding.plan` in the config is either a saved plan JSON (reproduced exactly, after checking
it was made for this world size, device and these tables) or a plan config YAML (planned now,
with its constraints). Null plans with default constraints. Planning happens on rank 0 and the
plan is broadcast, so all ranks shard identically even where the planner breaks ties by hash
order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn
from torchrec.distributed.types import ModuleSharder, ShardingPlan

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.env import DistEnv, collective_device
from dmmp_rec.distributed.planning.config import (
    CommsConfig,
    PlanConfig,
    load_plan_config,
    plan_config_from_dict,
)
from dmmp_rec.distributed.planning.io import load_plan, saved_plan_meta
from dmmp_rec.distributed.planning.planner import make_plan, make_sharders, plan_assumptions
from dmmp_rec.distributed.planning.topology import hbm_cap


def sharders_for(cfg: DmmpConfig, device: str = "cpu") -> list[ModuleSharder[nn.Module]]:
    """The planner's sharders, so that planning and sharding agree.

    They carry the fused optimiser and the quantized comms (the plan config's `comms`, or the
    `meta.comms` of a saved plan).

    Args:
        cfg: the job's config (`sharding.plan`, the fused optimiser's settings).
        device: "cpu" or "cuda", the device type the tables are sharded onto.

    Returns:
        The EmbeddingBagCollection sharder(s) DistributedModelParallel is given.
    """
    return make_sharders(cfg, plan_comms(cfg.sharding.plan), device)


def plan_comms(source: str | None) -> CommsConfig | None:
    """The comms precision `sharding.plan` asks for.

    Args:
        source: `sharding.plan`: a saved plan JSON, a plan config YAML, or None.

    Returns:
        The plan's comms config; None (fp32) when there is no plan or the plan sets none.
    """
    if source is None:
        return None
    if Path(source).suffix == ".json":
        saved = saved_plan_meta(source).get("comms")
        if saved is None:
            return None
        return plan_config_from_dict({"comms": saved}, source=f"{source}: meta").comms
    return load_plan_config(source).comms


def plan_facts(cfg: DmmpConfig, device: str) -> dict[str, Any]:
    """What the job's plan assumed, for the plan.json a training job writes.

    A saved plan's own record, else what planning now assumes (HBM per GPU on cuda, quantized
    comms).

    Args:
        cfg: the job's config (`sharding.plan`).
        device: "cpu" or "cuda"; the HBM cap is read on cuda only.

    Returns:
        {comms, hbm_cap_gb, hbm_cap_source} as far as the plan records or assumes them.
    """
    source = cfg.sharding.plan
    if source is not None and Path(source).suffix == ".json":
        meta = saved_plan_meta(source)
        return {k: meta[k] for k in ("comms", "hbm_cap_gb", "hbm_cap_source") if k in meta}
    plan_cfg = load_plan_config(source) if source is not None else PlanConfig()
    return plan_assumptions(plan_cfg, hbm_cap(plan_cfg) if device == "cuda" else None)


def _plan_locally(cfg: DmmpConfig, model: nn.Module, env: DistEnv) -> ShardingPlan:
    device = env.device.type
    source = cfg.sharding.plan
    if source is not None and Path(source).suffix == ".json":
        return load_plan(
            source,
            expected_world_size=env.world_size,
            table_names=[s.table_name for s in cfg.features.all],
            expected_shapes={s.table_name: (s.cardinality, s.dim) for s in cfg.features.all},
            expected_device=device,
            expected_local_world_size=env.local_world_size,
        )
    plan_cfg = load_plan_config(source) if source is not None else None
    result = make_plan(
        cfg, plan_cfg, env.world_size, device, module=model, local_world_size=env.local_world_size
    )
    if "hbm_cap_source" in result.meta:  # what the plan assumed of this job's GPUs
        print(f"planner: HBM per GPU {result.meta['hbm_cap_gb']:.2f} GiB "
              f"({result.meta['hbm_cap_source']})", flush=True)  # fmt: skip
    return result.plan


def resolve_plan(cfg: DmmpConfig, model: nn.Module, env: DistEnv) -> ShardingPlan:
    """The plan every rank shards with: rank 0 plans (or loads and checks the saved plan).

    The result is broadcast, so all ranks shard identically even where the planner breaks ties
    by hash order; a plan error is raised on every rank, before any training.

    Args:
        cfg: the job's config (features, `sharding.plan`).
        model: the unsharded model (EBC on meta), which the planner inspects.
        env: this process's place in the process group.

    Returns:
        The torchrec ShardingPlan.
    """
    box: list[object] = [None]
    if env.rank == 0:
        try:
            box[0] = _plan_locally(cfg, model, env)
        except Exception as e:  # shipped to the other ranks so that none of them hangs
            box[0] = e
    if dist.is_initialized() and env.world_size > 1:
        dist.broadcast_object_list(box, src=0, device=collective_device())
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]  # type: ignore[return-value]
