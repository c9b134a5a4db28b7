"""`dmmp-rec synth --config FILE [--out DIR] [overrides]`: generate the synthetic world."""

from __future__ import annotations

import argparse
import time

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "generate the seeded synthetic world (Parquet splits, catalogue, ground truth)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", default=None, help="output directory (default: data.path)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dmmp_rec.data.synthetic.generate import WORLD_FILE, generate_world

    cfg = config_from_args(args)
    out = args.out or cfg.data.path
    syn = cfg.synthetic
    print(
        f"synth: {syn.num_users} users, {syn.num_items} items, {syn.num_impressions} impressions "
        f"over {syn.num_days} days, seed {cfg.seed} -> {out}",
        flush=True,
    )
    t0 = time.perf_counter()
    summary = generate_world(cfg, out, progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    print("\n".join(summary_lines(summary)))
    print(f"synth: wrote {out} ({WORLD_FILE} has every figure) in {elapsed:.1f} s")
    return 0


def summary_lines(summary: dict) -> list[str]:
    """The world's headline figures; world.json has every figure."""
    bait = summary["bait_realised"]
    lines = [
        f"synth: {summary['rows']} impressions, {summary['clicks']} clicks (CTR "
        f"{summary['ctr']:.4f}), {summary['conversions']} conversions (CVR given click "
        f"{summary['cvr_given_click']:.4f}), {summary['rand_share']:.1%} uniform-random",
        f"synth: click baits {summary['bait_fraction']:.1%} of items, "
        f"{summary['bait_impression_share']:.1%} of impressions, CTR x{bait['ctr_ratio']:.2f} and "
        f"CVR given click x{bait['cvr_ratio']:.2f} of the other items",
    ]
    splits = ", ".join(
        f"{name} {s['rows']} rows ({s['conversions']} conversions, {_days(s['days'])})"
        for name, s in summary["splits"].items()
    )
    return [*lines, f"synth: {splits}"]


def _days(days: list[int]) -> str:
    return f"day {days[0]}" if len(days) == 1 else f"days {min(days)}-{max(days)}"
