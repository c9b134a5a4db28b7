"""`dmmp-rec synth --config FILE [--out DIR] [overrides]`: generate the synthetic world."""

from __future__ import annotations

import argparse
import json
import time

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "generate the seeded synthetic world (Parquet splits, catalogue, ground truth)"

_SUMMARY_KEYS = (
    "seed",
    "rows",
    "clicks",
    "conversions",
    "ctr",
    "cvr_given_click",
    "rand_share",
    "rand_ctr",
    "bait_fraction",
    "gem_fraction",
    "bait_impression_share",
    "bait_true",
    "bait_realised",
    "splits",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", default=None, help="output directory (default: data.path)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dmmp_rec.data.synthetic import WORLD_FILE, generate_world

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
    print(json.dumps({k: summary[k] for k in _SUMMARY_KEYS}, indent=2))
    print(f"synth: wrote {out} ({WORLD_FILE} has every figure) in {elapsed:.1f} s")
    return 0
