"""Scale beyond this machine: torchrec planner ESTIMATES for a production-sized config.

Nothing here runs on GPUs: `make_plan` plans `configs/production.yaml` (500M-row user table,
100M-row item table, dim 128) for 8, 64 and 256 GPUs with the constraints of
`configs/plans/gpu_64.yaml` (world size overridden) and reports the planner's own per-rank
memory and embedding step-time estimates. They are model outputs, not measurements.
"""

from __future__ import annotations

from typing import Any

from dmmp_rec.config import load_config
from dmmp_rec.distributed.planning.config import load_plan_config
from dmmp_rec.distributed.planning.planner import PlanError, make_plan

GIB = 2**30


def plan_estimates(config: str, plan_config: str, world_sizes: list[int]) -> list[dict[str, Any]]:
    """Per world size: max / mean per-rank HBM and DDR (GiB) and step time (ms), or the error."""
    cfg = load_config(config)
    out = []
    for ws in world_sizes:
        overrides = [f"topology.world_size={ws}"]
        if ws < 8:
            overrides.append(f"topology.local_world_size={ws}")
        plan_cfg = load_plan_config(plan_config, overrides)
        print(f"  planning {ws} GPUs", flush=True)
        try:
            res = make_plan(cfg, plan_cfg, ws, "cuda")
        except PlanError as e:
            out.append({"world_size": ws, "error": str(e).splitlines()[0][:300]})
            continue
        hbm = [r.hbm_used / GIB for r in res.ranks]
        ddr = [r.ddr_used / GIB for r in res.ranks]
        out.append(
            {
                "world_size": ws,
                "batch_per_rank": res.batch_size,
                "hbm_gib_max": round(max(hbm), 2),
                "hbm_gib_mean": round(sum(hbm) / len(hbm), 2),
                "hbm_cap_gib": round(res.ranks[0].hbm_cap / GIB, 1),
                "ddr_gib_max": round(max(ddr), 2),
                "step_ms_estimate": round(res.step_time_ms, 2),
                "samples_per_s_estimate": round(res.batch_size * ws / res.step_time_ms * 1000),
                "sharding": {t.name: f"{t.sharding_type}/{t.compute_kernel}" for t in res.tables},
            }
        )
    return out
