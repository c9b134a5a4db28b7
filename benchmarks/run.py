"""`make bench`: every benchmark in one run, on one machine, written to benchmarks/results/.

    python -m benchmarks.run [--quick] [--out benchmarks/results] [--only train,membw,...]

Sections: train (DMMP vs plain-PyTorch replica vs torch-rechub, 1 and 2 gloo processes),
roofline (FLOPs per sample, GEMM rate at the step's shapes, each system's share), membw (copy
bandwidth and the embedding-bound limit), sparse (the embedding-heavy workload of
configs/bench_sparse.yaml: the same systems, memory per process, bandwidth share), inference
(tower latency), retrieval (FAISS exact vs IVF at 100k and 1M items), planner (estimates for
8/64/256 GPUs). `--quick` shrinks everything (tiny world, few steps) for the smoke tests; its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from benchmarks.common import REPO, load_now, machine_info, read_json, summarise, write_json
from benchmarks.report import write_markdown
from benchmarks.training_runs import THREADS, cmdline, train_runs
from dmmp_rec.console import benign_warnings

SECTIONS = ("train", "roofline", "membw", "sparse", "inference", "retrieval", "planner")
SYSTEMS = ("dmmp", "replica", "rechub_ple_esmm", "rechub_dssm")
# The embedding-heavy workload: torch-rechub's dense Adam holds ~5x its 1.4 GB of tables per
# process (7.8 GB measured at 2 processes, 15.5 GB together), over this bench's memory budget;
# it runs at 1 process there.
SPARSE_RUNS = (("dmmp", 1), ("replica", 1), ("rechub_ple_esmm", 1), ("dmmp", 2), ("replica", 2))
SPARSE_HIST_LEN = 50

QUICK_OVERRIDES = [
    "synthetic.num_users=600",
    "synthetic.num_items=900",
    "synthetic.num_impressions=30000",
    "synthetic.num_days=5",
    "synthetic.chunk_rows=10000",
    "features.user.0.cardinality=600",
    "features.user.4.cardinality=900",
    "features.item.0.cardinality=900",
    "features.item.2.cardinality=200",
    "data.batch_size=64",
    "data.shuffle_buffer=1024",
    "model.teacher.expert_dims=[16]",
    "model.teacher.tower_dims=[8]",
    "model.student.tower_dims=[16]",
    "model.student.out_dim=8",
    "model.student.gate_dims=[8]",
]
SPARSE_QUICK_OVERRIDES = [
    "features.user.0.cardinality=5000",
    "features.user.4.cardinality=3000",
    "features.user.5.cardinality=1000",
    "features.item.0.cardinality=3000",
    "features.item.2.cardinality=300",
    "features.item.3.cardinality=1000",
    "data.batch_size=64",
    "sharding.plan=null",
]


@dataclass
class Plan:
    """Sizes of one run: the real one, or `--quick` for tests."""

    config: str
    overrides: list[str]
    data: Path
    runs: Path
    # per system: (warm-up steps, steps per repetition); rechub's dense Adam over 256M
    # embedding parameters takes seconds a step here, so it gets fewer steps per repetition
    steps: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "dmmp": (5, 10),
            "replica": (5, 10),
            "rechub_ple_esmm": (1, 2),
            "rechub_dssm": (1, 2),
        }
    )
    reps: int = 5
    world_sizes: tuple[int, ...] = (1, 2)
    systems: tuple[str, ...] = SYSTEMS
    train_steps: int = 100
    latency_calls: dict[int, int] = field(default_factory=lambda: {1: 300, 64: 200, 1024: 50})
    retrieval_sizes: tuple[int, ...] = (100_000, 1_000_000)
    queries: int = 500
    planner_world_sizes: tuple[int, ...] = (8, 64, 256)
    compile: bool = True
    run_timeout_s: float = 900.0  # one training measurement, build included
    roofline_reps: int = 5
    roofline_seconds: float = 1.5
    sparse_config: str = "configs/bench_sparse.yaml"
    sparse_overrides: list[str] = field(default_factory=list)
    sparse_runs: tuple[tuple[str, int], ...] = SPARSE_RUNS
    sparse_hist_len: int = SPARSE_HIST_LEN
    sparse_steps: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "dmmp": (5, 10),
            "replica": (5, 10),
            "rechub_ple_esmm": (1, 1),
            "rechub_dssm": (1, 1),
        }
    )


def make_plan(quick: bool, scratch: Path) -> Plan:
    if not quick:
        return Plan("configs/bench.yaml", [], REPO / "data/bench", REPO / "runs/bench")
    data = scratch / "world"
    return Plan(
        "configs/bench.yaml",
        QUICK_OVERRIDES + [f"data.path={data}"],
        data,
        scratch / "runs",
        steps=dict.fromkeys(SYSTEMS, (1, 2)),
        reps=5,
        world_sizes=(1, 2),
        train_steps=4,
        latency_calls={1: 5, 64: 5},
        retrieval_sizes=(500, 900),
        queries=40,
        planner_world_sizes=(8,),
        compile=False,
        run_timeout_s=240.0,
        roofline_reps=2,
        roofline_seconds=0.05,
        sparse_overrides=SPARSE_QUICK_OVERRIDES,
        sparse_hist_len=6,
        sparse_steps=dict.fromkeys(SYSTEMS, (1, 2)),
    )


def ensure_world(plan: Plan) -> dict[str, Any]:
    """Generate the benchmark world once (skipped when world.json is already there)."""
    if (plan.data / "world.json").is_file():
        return read_json(plan.data / "world.json")
    from dmmp_rec.config import load_config
    from dmmp_rec.data.synthetic.generate import generate_world

    cfg = load_config(REPO / plan.config, plan.overrides)
    print(f"generating the benchmark world into {plan.data}", flush=True)
    return generate_world(cfg, plan.data, progress=True)


def bench_train(plan: Plan, out: Path) -> dict[str, Any]:
    runs = [(s, ws) for ws in plan.world_sizes for s in plan.systems]
    return train_runs(
        out, plan.config, plan.overrides, runs, plan.steps, "train", plan.reps, plan.run_timeout_s
    )


def bench_membw(plan: Plan, train: dict[str, Any] | None, quick: bool) -> dict[str, Any]:
    from benchmarks.membw import copy_bandwidth_gbs
    from dmmp_rec.config import load_config
    from dmmp_rec.data.loader import loader_for_split

    cfg = load_config(REPO / plan.config, plan.overrides)
    bw = summarise(copy_bandwidth_gbs(64 if quick else 512, 5), 2)
    loader = loader_for_split(cfg, "train")
    batches = [b for _, b in zip(range(4), loader, strict=False)]
    return {**embedding_limit(cfg, batches, bw, train), "loadavg": load_now()}


def embedding_limit(
    cfg: Any, batches: list[Any], bw: dict[str, Any], train: dict[str, Any] | None
) -> dict[str, Any]:
    """Bytes per sample of embedding traffic, the samples/s the copy bandwidth allows, and the
    share of it each run reaches (= the share of the bandwidth its embedding traffic uses)."""
    from benchmarks.membw import bytes_per_sample, mean_pooling_factors

    per = bytes_per_sample(cfg, mean_pooling_factors(batches))
    limit = bw["median"] * 1e9 / per["bytes_per_sample"]
    out: dict[str, Any] = {"copy_gbs": bw, **per, "limit_samples_per_s": round(limit)}
    shares = {}
    for run in (train or {}).get("runs", []):
        if "samples_per_s_summary" in run:
            key = f"{run['system']}@{run['world_size']}"
            shares[key] = round(run["samples_per_s_summary"]["median"] / limit, 4)
    out["share_of_limit"] = shares
    return out


def bench_roofline(plan: Plan, train: dict[str, Any] | None) -> dict[str, Any]:
    """FLOPs per sample of each system, the GEMM rate at the dense step's own shapes on 1 and
    2 threads (and 2 single-thread processes, the way the trainers run), and each run's share
    of the roofline that gives."""
    from benchmarks.roofline import (
        dense_step_ms,
        roofline,
        roofline_shares,
        step_breakdown,
        system_mflops,
    )
    from dmmp_rec.config import load_config

    cfg = load_config(REPO / plan.config, plan.overrides)
    print("[roofline] flop count and GEMM rate at the step's shapes", flush=True)
    out = roofline(cfg, cfg.data.batch_size, plan.roofline_reps, plan.roofline_seconds)
    no_cands = load_config(REPO / plan.config, [*plan.overrides, "model.loss.distill_candidates=0"])
    out["mflop_per_sample_without_candidates"] = system_mflops(no_cands, "dmmp")
    out["mflop_per_sample_by_system"] = {s: system_mflops(cfg, s) for s in plan.systems}
    runs = (train or {}).get("runs", [])
    out["share_of_roofline"] = roofline_shares(out, runs)
    steps = 2 if plan.roofline_seconds < 1 else 10
    out["dense_step"] = dense_step_ms(cfg, cfg.data.batch_size, steps, plan.roofline_reps)
    out["dmmp_step_breakdown"] = step_breakdown(out, runs)
    out["loadavg"] = load_now()
    return out


def bench_sparse(plan: Plan, out: Path, membw: dict[str, Any] | None) -> dict[str, Any]:
    """The embedding-heavy workload: throughput and memory of each system at 1 and 2
    processes, the embedding traffic's share of the copy bandwidth, FLOPs per sample."""
    from benchmarks.membw import copy_bandwidth_gbs
    from benchmarks.roofline import system_mflops
    from benchmarks.sparse_batches import random_batches
    from dmmp_rec.config import load_config

    extra = ["--random-batches", str(plan.sparse_hist_len)]
    runs = list(plan.sparse_runs)
    res = train_runs(
        out,
        plan.sparse_config,
        plan.sparse_overrides,
        runs,
        plan.sparse_steps,
        "sparse",
        plan.reps,
        plan.run_timeout_s,
        extra,
        {1: ["sharding.plan=null"]},  # the plan config is for 2 ranks
    )
    cfg = load_config(REPO / plan.sparse_config, plan.sparse_overrides)
    bw = (membw or {}).get("copy_gbs") or summarise(copy_bandwidth_gbs(64, 5), 2)
    batches = random_batches(cfg, 4, plan.sparse_hist_len)
    res["membw"] = embedding_limit(cfg, batches, bw, res)
    res["mflop_per_sample"] = system_mflops(cfg, "dmmp")
    res["hist_len"] = plan.sparse_hist_len
    res["rows_total"] = sum(s.cardinality for s in cfg.features.all)
    res["table_gib"] = round(sum(s.cardinality * s.dim * 4 for s in cfg.features.all) / 2**30, 2)
    res["loadavg"] = load_now()
    return res


def trained_model(plan: Plan) -> tuple[Any, Any, dict[str, Any]]:
    from benchmarks.trained import load_unsharded, train_briefly
    from dmmp_rec.config import load_config

    cfg = load_config(REPO / plan.config, plan.overrides)
    run_dir = plan.runs / "trained"
    if not (run_dir / "summary.json").is_file():
        train_briefly(str(REPO / plan.config), plan.overrides, run_dir, plan.train_steps)
    summary = read_json(run_dir / "summary.json")
    return cfg, load_unsharded(cfg, run_dir), summary


def bench_inference_section(plan: Plan, cfg: Any, model: Any) -> dict[str, Any]:
    from benchmarks.inference import bench_inference
    from benchmarks.trained import item_kjts, user_kjts

    batches = sorted(plan.latency_calls)
    big = max(batches)
    users = user_kjts(cfg, np.arange(big), big)[0]
    items = item_kjts(cfg, big, big)[0]
    ub = {b: _first_rows(users, b) for b in batches}
    ib = {b: _first_rows(items, b) for b in batches}
    return bench_inference(cfg, model, ub, ib, plan.latency_calls, with_compile=plan.compile)


def _first_rows(kjt: KeyedJaggedTensor, n: int) -> KeyedJaggedTensor:
    """The first `n` rows of a KJT."""
    jts = kjt.to_dict()
    values, lengths = [], []
    for k in kjt.keys():
        lens = jts[k].lengths()[:n]
        values.append(jts[k].values()[: int(lens.sum())])
        lengths.append(lens)
    return KeyedJaggedTensor(
        keys=kjt.keys(), values=torch.cat(values), lengths=torch.cat(lengths).int()
    )


def bench_retrieval_section(plan: Plan, cfg: Any, model: Any) -> dict[str, Any]:
    from benchmarks.retrieval import bench_retrieval
    from benchmarks.trained import encode, item_kjts, user_kjts

    largest = max(plan.retrieval_sizes)
    if largest > cfg.synthetic.num_items:
        raise SystemExit(f"retrieval over {largest} items needs a catalogue that large")
    print(f"[retrieval] encoding {largest} items through the trained item towers", flush=True)
    t0 = time.perf_counter()
    items = encode(model.item_vector, item_kjts(cfg, largest, 8192))
    encode_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    rows = rng.choice(cfg.synthetic.num_users, 2 * plan.queries, replace=False)
    queries = encode(model.query_vector, user_kjts(cfg, np.sort(rows), 4096))
    measured, tuning = queries[: plan.queries], queries[plan.queries :]
    out: dict[str, Any] = {"encode_items_s": round(encode_s, 1), "sizes": []}
    for n in plan.retrieval_sizes:
        print(f"[retrieval] {n} items", flush=True)
        out["sizes"].append(bench_retrieval(items[:n], measured, tuning))
    return out


def bench_planner(plan: Plan) -> dict[str, Any]:
    from benchmarks.planner_scale import plan_estimates

    return {
        "label": "PLANNER ESTIMATES (torchrec EmbeddingShardingPlanner), not measurements",
        "config": "configs/production.yaml",
        "plan_config": "configs/plans/gpu_64.yaml",
        "estimates": plan_estimates(
            str(REPO / "configs/production.yaml"),
            str(REPO / "configs/plans/gpu_64.yaml"),
            list(plan.planner_world_sizes),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes for smoke tests")
    p.add_argument("--out", default=str(REPO / "benchmarks/results"))
    p.add_argument("--scratch", default=None, help="--quick: where its tiny world goes")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = p.parse_args(argv)
    benign_warnings.install()
    sections = [s for s in args.only.split(",") if s]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown sections {bad}; known: {', '.join(SECTIONS)}")
    out = Path(args.out)
    scratch = Path(args.scratch or out / "scratch")
    plan = make_plan(args.quick, scratch)
    torch.set_num_threads(THREADS)
    faiss.omp_set_num_threads(THREADS)
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "command": cmdline([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "machine": machine_info(),
        "config": plan.config,
        "overrides": plan.overrides,
        "world": {k: v for k, v in ensure_world(plan).items() if not isinstance(v, dict | list)},
    }
    if "train" in sections:
        result["train"] = bench_train(plan, out)
    if "roofline" in sections:
        result["roofline"] = bench_roofline(plan, result.get("train"))
    if "membw" in sections:
        result["membw"] = bench_membw(plan, result.get("train"), args.quick)
    if "sparse" in sections:
        result["sparse"] = bench_sparse(plan, out, result.get("membw"))
    if "inference" in sections or "retrieval" in sections:
        cfg, model, summary = trained_model(plan)
        result["trained"] = {k: summary.get(k) for k in ("steps", "samples_per_s", "seconds")}
        if "inference" in sections:
            print("[inference]", flush=True)
            result["inference"] = bench_inference_section(plan, cfg, model)
        if "retrieval" in sections:
            result["retrieval"] = bench_retrieval_section(plan, cfg, model)
    if "planner" in sections:
        print("[planner]", flush=True)
        result["planner"] = bench_planner(plan)
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["loadavg_end"] = load_now()
    write_json(out / "latest.json", result)
    write_markdown(result, out / "latest.md")
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'} in {result['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
