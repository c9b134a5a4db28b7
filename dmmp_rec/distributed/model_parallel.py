"""The sharding plan a job trains with, and the sharders that realise it.

`sharding.plan` in the config is either a saved plan JSON (reproduced exactly, after checking
it was made for this world size and these tables) or a plan config YAML (planned now, with its
constraints). Null plans with default constraints. Every rank computes the same plan: the
planner is deterministic for identical inputs.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchrec.distributed.types import ModuleSharder, ShardingPlan

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.distributed.plan_config import load_plan_config
from dmmp_rec.distributed.plan_io import load_plan
from dmmp_rec.distributed.planner import make_plan, make_sharders


def sharders_for(cfg: DmmpConfig) -> list[ModuleSharder[nn.Module]]:
    """The planner's sharders, so that planning and sharding agree on the fused optimiser."""
    return make_sharders(cfg)


def resolve_plan(cfg: DmmpConfig, model: nn.Module, env: DistEnv) -> ShardingPlan:
    device = env.device.type
    source = cfg.sharding.plan
    table_names = [s.table_name for s in cfg.features.all]
    if source is not None and Path(source).suffix == ".json":
        return load_plan(source, expected_world_size=env.world_size, table_names=table_names)
    plan_cfg = load_plan_config(source) if source is not None else None
    return make_plan(cfg, plan_cfg, env.world_size, device, module=model).plan
