"""What of a checkpoint carries over when the job's sharding plan changed.

DCP reshards weights freely (N ranks -> M ranks, table_wise -> column_wise). Optimizer state
is another matter: row-wise Adagrad keeps one accumulator per row *per column shard*, so a
table split into k column shards saves k accumulators per row, which no other split can load;
and a data_parallel table's state lives in the dense AdamW instead of the fused optimizer.
For tables whose layout changed that way, the restore keeps their weights, re-initialises
their optimizer state, and says so. Everything else, including all weights, is restored.
"""

from __future__ import annotations

from typing import Any

from torchrec.distributed.types import ShardingPlan


def table_layouts(plan: ShardingPlan) -> dict[str, list[Any]]:
    """Per table: [which optimizer owns its state, number of column shards]."""
    layouts: dict[str, list[Any]] = {}
    for module_plan in plan.plan.values():
        for table, ps in module_plan.items():  # type: ignore[attr-defined]
            owner = "dense" if ps.sharding_type == "data_parallel" else "fused"
            spec = ps.sharding_spec
            shards = getattr(spec, "shards", None) or []
            columns = len({s.shard_offsets[1] for s in shards}) or 1
            layouts[table] = [owner, columns]
    return layouts


def changed_optimizer_layouts(
    saved: dict[str, list[Any]] | None, current: dict[str, list[Any]]
) -> list[str]:
    """Tables whose optimizer state cannot be loaded from a checkpoint with layout `saved`."""
    if saved is None:
        return []
    return sorted(t for t, layout in current.items() if saved.get(t, layout) != layout)


def optimizer_state_to_load(optim_state: dict[str, Any], skip_tables: list[str]) -> dict[str, Any]:
    """The optimizer tensors to read from a checkpoint: every state entry except those of
    `skip_tables`. Hyper-parameters (param_groups) come from the config, never the checkpoint."""
    marks = [f"embedding_bags.{t}.weight" for t in skip_tables]
    return {
        "state": {
            key: value
            for key, value in optim_state["state"].items()
            if not any(mark in key for mark in marks)
        }
    }
