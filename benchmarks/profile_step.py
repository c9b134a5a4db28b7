"""Where one system's training step spends its time: torch.profiler over a few steps, by op.

    torchrun --nproc_per_node 1 benchmarks/profile_step.py --system dmmp --config C \
        [--random-batches 50] [--out J]

Rank 0 prints its step's CPU time, the ops with the most self time and a split into matrix
products, embedding kernels (fbgemm's fused lookups / row-wise Adagrad, or the replica's
EmbeddingBag and sparse Adagrad ops), collectives and everything else (elementwise ops of the
dense part, optimiser, framework). Writes the same as JSON with --out. For the benchmark
README's explanations; timings under load are inflated, shares less so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_now, write_json  # noqa: E402
from benchmarks.train_worker import SYSTEMS, make_stepper, preload  # noqa: E402
from dmmp_rec.config import load_config  # noqa: E402
from dmmp_rec.distributed.env import init_distributed  # noqa: E402

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
COLLECTIVE = "c10d::"
# the replica's table work: EmbeddingBag forward/backward and torch's sparse Adagrad
SPARSE_ATEN = (
    "aten::_embedding_bag",
    "aten::_embedding_bag_backward",
    "aten::_embedding_bag_sparse_backward",
    "aten::_coalesce",
    "aten::_sparse_coo_tensor_with_dims_and_tensors",
    "aten::index_add_",
    "aten::_sparse_addmm",
)


def category(name: str, system: str) -> str:
    if name in GEMM:
        return "matrix products"
    if name.startswith("fbgemm::") or name in SPARSE_ATEN:
        return "embedding kernels"
    if name.startswith(COLLECTIVE):
        return "collectives"
    return "other"


def breakdown(prof: Any, steps: int, system: str, top: int) -> dict[str, Any]:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    cats: dict[str, float] = {}
    for e in events:
        c = category(e.key, system)
        cats[c] = cats.get(c, 0.0) + e.self_cpu_time_total
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {
        "profiled_ms_per_step": round(total / steps / 1e3, 2),
        "share_by_category": {k: round(v / total, 3) for k, v in sorted(cats.items())},
        "top_ops_ms_per_step": {
            e.key: round(e.self_cpu_time_total / steps / 1e3, 2) for e in ranked
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", required=True, choices=SYSTEMS)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--random-batches", type=int, default=0, metavar="HIST_LEN")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", default=None)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    env = init_distributed("cpu")
    batches = preload(cfg, env, 16, args.random_batches)
    step = make_stepper(args.system, cfg, env, batches)
    for _ in range(4):
        step()
    dist.barrier()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        step()
    cpu_ms = (time.process_time() - c0) / args.steps * 1e3
    wall_ms = (time.perf_counter() - t0) / args.steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    dist.barrier()
    if env.is_main:
        res = {
            "system": args.system,
            "world_size": env.world_size,
            "config": args.config,
            "cpu_ms_per_step": round(cpu_ms, 1),
            "wall_ms_per_step": round(wall_ms, 1),
            "loadavg": load_now(),
            **breakdown(prof, args.steps, args.system, args.top),
        }
        for k, v in res.items():
            print(f"{k}: {v}")
        if args.out:
            write_json(args.out, res)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
