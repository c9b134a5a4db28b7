"""One training-throughput measurement: one system, one process group (run under torchrun).

    torchrun --nproc_per_node 2 benchmarks/train_worker.py --system dmmp --config C --out J

Systems: `dmmp` (our torchrec model: DMP, planner, fused row-wise Adagrad,
TrainPipelineSparseDist, exactly as dmmp_rec.train.trainer builds it), `replica` (plain PyTorch,
benchmarks/replica.py), `rechub_ple_esmm` and `rechub_dssm` (benchmarks/rechub.py). All read the
same batches: each rank pre-loads its share of the train split with the project's loader, so
that the measured time is the training step, not Parquet decoding. After `warmup` steps, `reps`
repetitions of `steps` steps are timed (barrier before and after each) and rank 0 writes
samples/s (global batch x steps / seconds) per repetition.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_now, write_json  # noqa: E402
from dmmp_rec.config import DmmpConfig, load_config  # noqa: E402
from dmmp_rec.console import benign_warnings  # noqa: E402
from dmmp_rec.data.loader import loader_for_split  # noqa: E402
from dmmp_rec.distributed.env import DistEnv, init_distributed  # noqa: E402

SYSTEMS = ("dmmp", "replica", "rechub_ple_esmm", "rechub_dssm")


def preload(cfg: DmmpConfig, env: DistEnv, count: int, hist_len: int = 0) -> list[Any]:
    """This rank's share of the train split, or (`hist_len` > 0) batches drawn in memory with
    histories of about `hist_len` ids (benchmarks/sparse_batches.py)."""
    if hist_len > 0:
        from benchmarks.sparse_batches import random_batches

        return random_batches(cfg, count, hist_len, env.rank, cfg.seed)
    loader = loader_for_split(cfg, "train", env.rank, env.world_size)
    return list(itertools.islice(loader.forever(), count))


def peak_rss_gib() -> float:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if env.world_size == 1:
        return model
    # gradients live in DDP's buckets: one copy of the dense gradients, not two (torch-rechub's
    # dense embedding gradients are ~1 GB a process on bench.yaml)
    return torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)


def dmmp_stepper(cfg: DmmpConfig, env: DistEnv, batches: list[Any]) -> Callable[[], None]:
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    from dmmp_rec.distributed.optim import combined_optimizer
    from dmmp_rec.distributed.runtime import build_sharded_model

    dmp = build_sharded_model(cfg, env)
    optimizer, _ = combined_optimizer(dmp, cfg.train)
    pipeline = TrainPipelineSparseDist(dmp, optimizer, env.device, execute_all_batches=True)
    it: Iterator[Any] = itertools.cycle(batches)
    return lambda: pipeline.progress(it)


def plain_stepper(
    model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], batches: list[Any]
) -> Callable[[], None]:
    it = itertools.cycle(batches)

    def step() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss, _ = model(next(it))
        loss.backward()
        for opt in optimizers:
            opt.step()

    return step


def make_stepper(
    system: str, cfg: DmmpConfig, env: DistEnv, batches: list[Any]
) -> Callable[[], None]:
    torch.manual_seed(cfg.seed)
    if system == "dmmp":
        return dmmp_stepper(cfg, env, batches)
    if system == "replica":
        from benchmarks.replica import ReplicaBatch, ReplicaModel, replica_optimizers

        model = ReplicaModel(cfg)
        opts = list(replica_optimizers(model, cfg))
        data = [ReplicaBatch(b, cfg.features.names) for b in batches]
        return plain_stepper(_ddp(model, env), opts, data)
    if system.startswith("rechub_"):
        from benchmarks.rechub import RechubBatch, RechubModel, rechub_optimizer

        model = RechubModel(cfg, system.removeprefix("rechub_"))  # type: ignore[arg-type]
        data = [RechubBatch(b, cfg) for b in batches]
        return plain_stepper(_ddp(model, env), [rechub_optimizer(model, cfg)], data)
    raise SystemExit(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")


def measure(
    step: Callable[[], None], warmup: int, steps: int, reps: int
) -> tuple[list[float], list[float]]:
    """Wall seconds per repetition of `steps` steps, after `warmup` steps, ranks synchronised;
    and this process's CPU seconds in each (less sensitive than wall time to other jobs on
    the cores, which take the CPU away but do not add to this process's CPU time)."""
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for r in range(reps):
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()  # GPU steps return before their work is done
        cpu.append(time.process_time() - c0)
        dist.barrier()
        wall.append(time.perf_counter() - t0)
        if dist.get_rank() == 0:
            print(f"  rep {r + 1}/{reps}: {wall[-1]:.2f} s", flush=True)
    return wall, cpu


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", required=True, choices=SYSTEMS)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="JSON written by rank 0")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument(
        "--random-batches",
        type=int,
        default=0,
        metavar="HIST_LEN",
        help="draw batches in memory with ~HIST_LEN-id histories instead of reading the world",
    )
    p.add_argument("overrides", nargs="*")
    return p.parse_args(argv)


def _result(
    args: argparse.Namespace,
    world_size: int,
    global_batch: int,
    build_s: float,
    seconds: list[float],
    per_rank: list[dict[str, Any]],
) -> dict[str, Any]:
    """The measurement's JSON: samples/s and CPU per sample per repetition, memory per rank."""
    return {
        "system": args.system,
        "world_size": world_size,
        "global_batch": global_batch,
        "steps_per_rep": args.steps,
        "warmup_steps": args.warmup,
        "build_s": round(build_s, 2),
        "rep_seconds": [round(s, 4) for s in seconds],
        "samples_per_s": [global_batch * args.steps / s for s in seconds],
        # CPU time of all ranks together per sample, per repetition
        "cpu_us_per_sample": [
            sum(m["cpu"][r] for m in per_rank) / (global_batch * args.steps) * 1e6
            for r in range(args.reps)
        ],
        "torch_threads": torch.get_num_threads(),
        "random_batches_hist_len": args.random_batches,
        "peak_rss_gib_per_process": [m["peak_rss_gib"] for m in per_rank],
        "rss_gib_after_data_per_process": [round(m["data_gib"], 2) for m in per_rank],
        "loadavg": load_now(),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    benign_warnings.install()

    cfg = load_config(args.config, args.overrides)
    # the CPU unless the config asks for CUDA (scripts/gpu_check.py): the other systems here
    # always train on the CPU, so "auto" must not move DMMP alone to a GPU
    env = init_distributed("cuda" if cfg.train.device == "cuda" else "cpu")
    batches = preload(cfg, env, min(args.warmup + args.steps * args.reps, 64), args.random_batches)
    rss_data = peak_rss_gib()
    t_build = time.perf_counter()
    step = make_stepper(args.system, cfg, env, batches)
    build_s = time.perf_counter() - t_build
    if env.is_main:
        print(f"{args.system} x{env.world_size}: built in {build_s:.1f} s, measuring", flush=True)
    seconds, cpu_seconds = measure(step, args.warmup, args.steps, args.reps)
    global_batch = cfg.data.batch_size * env.world_size
    per_rank: list[Any] = [None] * env.world_size
    mine = {"peak_rss_gib": round(peak_rss_gib(), 2), "data_gib": rss_data, "cpu": cpu_seconds}
    dist.all_gather_object(per_rank, mine)
    if env.is_main:
        result = _result(args, env.world_size, global_batch, build_s, seconds, per_rank)
        write_json(args.out, result)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
