"""Which sharding plan a training job uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ShardingConfig:
    """Which sharding plan a training job uses (`sharding:`).

    Args:
        plan (str | None): a saved plan JSON (from `dmmp-rec plan`) or a plan config YAML in
            configs/plans/; null (default) lets the planner choose with default constraints for
            the job's world size.
    """

    plan: str | None = None
