"""What the training loader costs per batch, alone: Parquet decode, shuffle gather, KJT build.

    python benchmarks/loader_cost.py --config configs/bench.yaml [--batches N] [key=value ...]

Reads rank 0 of 1's training batches with the project's loader in this thread (no model), one
epoch unless --batches says otherwise (row groups are decoded whole and cached, so a short read
would leave most decoding out), and prints wall and CPU milliseconds per batch. Set against a
training step's time it bounds what reading ahead can win (benchmarks/results/loader_prefetch.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_now  # noqa: E402
from dmmp_rec.config import load_config  # noqa: E402
from dmmp_rec.data.loader import loader_for_split  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--batches", type=int, default=0, help="default: one epoch")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    loader = loader_for_split(cfg, "train")
    count = args.batches or loader.num_batches_per_epoch
    batches = loader.forever()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        next(batches)
    wall_ms = (time.perf_counter() - wall) / count * 1e3
    cpu_ms = (time.process_time() - cpu) / count * 1e3
    print(
        f"loader, batch {cfg.data.batch_size}: {wall_ms:.2f} ms wall, {cpu_ms:.2f} ms CPU a batch "
        f"({count} batches; load {load_now()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
