"""Which sharding plan a training job uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ShardingConfig:
    """`plan` is a saved plan JSON (from `dmmp-rec plan`) or a plan config YAML in configs/plans/;
    null lets the planner choose with default constraints for the job's world size."""

    plan: str | None = None
