"""`dmmp-rec plan`: make a sharding plan offline, print its statistics and save it as JSON."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from dmmp_rec.cli import add_config_arguments, config_from_args
from dmmp_rec.commands.option_types import positive_int
from dmmp_rec.distributed.planning.config import GIB, PlanConfig, PlanError, load_plan_config
from dmmp_rec.distributed.planning.io import save_plan
from dmmp_rec.distributed.planning.planner import PlanResult, RankStats, TableDecision, make_plan

HELP = "plan how the embedding tables are sharded (offline, any cluster size) and save the plan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", help="plan config YAML (configs/plans/*.yaml); default: none")
    parser.add_argument(
        "--plan-set",
        action="append",
        default=[],
        metavar="key.path=value",
        help="override a plan config key, e.g. topology.world_size=256 (repeatable)",
    )
    parser.add_argument("--world-size", type=positive_int, help="ranks; default: the plan config's")
    parser.add_argument(
        "--local-world-size",
        type=positive_int,
        help="ranks per host (GPUs per node); default: the plan config's, else 8 on cuda",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: the plan config's")
    parser.add_argument("--out", required=True, help="where to write the plan JSON")
    parser.add_argument(
        "--torchrec-stats", action="store_true", help="also log torchrec's own stats table"
    )
    add_config_arguments(parser)


def _ranges(ranks: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    start = prev = None
    for r in list(ranks) + [None]:  # type: ignore[list-item]
        if start is not None and r == prev + 1:  # type: ignore[operator]
            prev = r
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = r
    return ",".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(
        x.rstrip() for x in [fmt.format(*header), line, *(fmt.format(*r) for r in rows)]
    )


def _size(n: float) -> str:
    """Compact bytes: 32.12G, 7.78M, 0."""
    if n == 0:
        return "0"
    return f"{n / GIB:.2f}G" if abs(n) >= GIB else f"{n / 2**20:.2f}M"


def _rank_cells(r: RankStats) -> list[str]:
    return [
        str(r.num_shards),
        f"{_size(r.hbm_used)}/{_size(r.hbm_cap)}",
        f"{_size(r.ddr_used)}/{_size(r.ddr_cap)}",
        f"{r.fwd_compute_ms:.3f}",
        f"{r.fwd_comms_ms:.3f}",
        f"{r.bwd_compute_ms:.3f}",
        f"{r.bwd_comms_ms:.3f}",
        f"{r.prefetch_compute_ms:.3f}",
        f"{r.total_ms:.3f}",
    ]


def _grouped(ranks: list[RankStats], cells: Callable[[RankStats], list[str]]) -> list[list[str]]:
    """One row per run of consecutive ranks with identical numbers, so 256 ranks stay readable."""
    rows: list[list[str]] = []
    group: list[int] = []
    last: list[str] | None = None
    for r in ranks + [None]:  # type: ignore[list-item]
        current = cells(r) if r is not None else None
        if current != last and group:
            rows.append([_ranges(group), *last])  # type: ignore[misc]
            group = []
        if r is not None:
            group.append(r.rank)
        last = current
    return rows


def _table_cells(t: TableDecision) -> list[str]:
    return [
        t.name,
        f"{t.rows:,} x {t.dim}",
        t.sharding_type,
        t.compute_kernel,
        _ranges(t.ranks),
        str(len(t.shard_sizes)),
        _size(t.hbm_bytes),
        _size(t.ddr_bytes),
        "" if t.caching_ratio is None else f"{t.caching_ratio:g}",
    ]


def format_report(result: PlanResult) -> str:
    """The per-rank memory / time table, the per-table decisions and a summary, as text."""
    slowest = max(result.ranks, key=lambda r: r.total_ms)
    fullest = max(result.ranks, key=lambda r: (r.hbm_used, r.ddr_used))
    hosts = result.world_size // result.local_world_size
    per_rank = _table(
        [
            "ranks",
            "shards",
            "HBM used/cap",
            "DDR used/cap",
            "fwd comp",
            "fwd comms",
            "bwd comp",
            "bwd comms",
            "prefetch",
            "total ms",
        ],
        _grouped(result.ranks, _rank_cells),
    )
    per_table = _table(
        [
            "table",
            "rows x dim",
            "sharding",
            "kernel",
            "ranks",
            "shards",
            "HBM",
            "DDR",
            "cache",
        ],
        [_table_cells(t) for t in result.tables],
    )
    return "\n".join(
        [
            f"Per-rank estimates ({result.world_size} x {result.device}, {hosts} host(s) x "
            f"{result.local_world_size}, batch {result.batch_size} per rank; memory in GiB (G) or "
            "MiB (M); times in ms per step)",
            per_rank,
            "",
            "Per-table decisions (memory summed over the table's shards)",
            per_table,
            "",
            f"Reserved per rank: {result.reserve_fraction:.0%} margin; dense "
            f"HBM {_size(result.dense_reserved.hbm)} DDR {_size(result.dense_reserved.ddr)}; KJT "
            f"HBM {_size(result.kjt_reserved.hbm)} DDR {_size(result.kjt_reserved.ddr)} "
            "(dense and KJT are included in 'used')",
            f"Fullest rank: {fullest.rank} (HBM {_size(fullest.hbm_used)}, "
            f"DDR {_size(fullest.ddr_used)})",
            f"Estimated embedding step time: {result.step_time_ms:.3f} ms (slowest rank "
            f"{slowest.rank}); planner evaluated {result.num_proposals} proposal(s)",
        ]
    )


def _resolve_job(args: argparse.Namespace, plan_cfg: PlanConfig | None) -> tuple[int, str]:
    topo = plan_cfg.topology if plan_cfg is not None else None
    world_size = args.world_size or (topo.world_size if topo else None)
    if world_size is None:
        raise PlanError("give --world-size (no plan config fixes topology.world_size)")
    device = args.device or (topo.device if topo else None) or "cpu"
    return world_size, device


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    plan_cfg = load_plan_config(args.plan, args.plan_set) if args.plan else None
    if args.torchrec_stats:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("torchrec.distributed.planner.stats").setLevel(logging.INFO)
    world_size, device = _resolve_job(args, plan_cfg)
    print(
        f"planning {len(cfg.features.all)} tables of {cfg.source} for {world_size} x {device}"
        + (f" with {plan_cfg.source}" if plan_cfg else " with default constraints"),
        flush=True,
    )
    result = make_plan(
        cfg,
        plan_cfg,
        world_size,
        device,
        torchrec_stats=args.torchrec_stats,
        local_world_size=args.local_world_size,
    )
    if "hbm_cap_source" in result.meta:
        print(f"HBM per GPU {result.meta['hbm_cap_gb']:.2f} GiB ({result.meta['hbm_cap_source']})")
    print(format_report(result))
    path = save_plan(result, args.out)
    print(f"wrote {path}")
    return 0
