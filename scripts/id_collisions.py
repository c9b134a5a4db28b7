"""Collision rate of the hash fold vs managed collisions, at several oversubscriptions.

    python scripts/id_collisions.py --config configs/synthetic.yaml [--split val] \
        [--ratios 1,2,4] [--policies distance_lfu,lru,lfu] [--interval 1] [--raw64] \
        [--out FILE.json] [k=v ...]

For each id feature and ratio r, the table gets (the world's users or items) / r rows (r
distinct world ids per row) and both policies replay the training days (how:
`dmmp_rec.eval.id_collisions`); the figures are the share of the measured day's lookups (and
distinct ids) whose row holds another id of that day. docs/data.md "Id spaces larger than the
tables" quotes the output.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from dmmp_rec.config import load_config
from dmmp_rec.eval.id_collisions import (
    best_possible,
    collision_rate,
    hash_rows,
    managed_rows,
    read_days,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--features", default="user_id,item_id,user_hist_items")
    p.add_argument("--ratios", default="1,2,4")
    p.add_argument("--policies", default="distance_lfu", help="comma-separated; empty: none")
    p.add_argument("--interval", type=int, help="eviction_interval (default: the config's)")
    p.add_argument("--batch-rows", type=int, default=1024, help="global batch (rows) per step")
    p.add_argument("--raw64", action="store_true", help="64-bit raw ids (SplitMix64 of the id)")
    p.add_argument("--out", type=Path)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    results = []
    for name in args.features.split(","):
        spec = cfg.features.by_name(name)
        train = list(read_days(cfg.data.path, "train", name, args.raw64).values())
        measured_days = read_days(cfg.data.path, args.split, name, args.raw64)
        measured = next(iter(measured_days.values()))
        for ratio in [float(r) for r in args.ratios.split(",")]:
            world_ids = cfg.synthetic.num_users if name == "user_id" else cfg.synthetic.num_items
            rows = max(2, int(world_ids / ratio))
            sized = replace(spec, cardinality=rows)
            row = {"feature": name, "ratio": ratio, "rows": rows, "split": args.split}
            row["interval"] = args.interval or spec.managed.eviction_interval
            row["hash"] = collision_rate(measured.values, hash_rows(sized, measured))
            row["best_possible_lookups"] = best_possible(measured.values, rows)
            for policy in [p for p in args.policies.split(",") if p]:
                t0 = time.perf_counter()
                interval = args.interval or sized.managed.eviction_interval
                policy_spec = replace(
                    sized.managed, eviction_policy=policy, eviction_interval=interval
                )
                managed = replace(sized, managed=policy_spec)
                got = managed_rows(managed, train, measured, args.batch_rows)
                row[f"managed_{policy}"] = collision_rate(measured.values, got)
                row[f"managed_{policy}"]["replay_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        args.out.write_text(json.dumps({"raw64": args.raw64, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
