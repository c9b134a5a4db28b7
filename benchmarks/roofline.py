"""The dense step's compute roofline: FLOPs per sample and the GEMM rate at the model's shapes.

The training step of DMMP's dense part is matrix products. torch's flop counter
(`torch.utils.flop_counter.FlopCounterMode`) counts them exactly for one forward + backward of
`DenseArch` on random pooled embeddings; a dispatch mode records the shape and layout of every
product in that step, and timing those same products (nothing else) on this machine gives the
rate a perfect implementation could reach. Rate / FLOPs per sample is the compute roofline in
samples/s; a system's measured samples/s over it is its share.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from dmmp_rec.config import DmmpConfig

aten = torch.ops.aten
# (rows, inner, cols, a transposed, b transposed): one product's shape and operand layouts
Gemm = tuple[int, int, int, bool, bool]


def dense_step_inputs(
    cfg: DmmpConfig, batch: int, seed: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pooled group embeddings (leaves needing gradients, as the EBC's output would be),
    labels at realistic rates and item ids, for one `DenseArch` call."""
    g = torch.Generator().manual_seed(seed)
    groups = {
        name: torch.randn(batch, cfg.features.group_dim(name), generator=g).requires_grad_()
        for name in ("user", "item", "context")
        if cfg.features.group_dim(name) > 0
    }
    click = (torch.rand(batch, generator=g) < 0.05).float()
    conversion = click * (torch.rand(batch, generator=g) < 0.2).float()
    item_ids = torch.randint(0, cfg.features.group("item")[0].cardinality, (batch,), generator=g)
    return groups, click, conversion, item_ids


def _dense(cfg: DmmpConfig) -> torch.nn.Module:
    from dmmp_rec.model.objective import DenseArch

    torch.manual_seed(cfg.seed)
    dims = {g: cfg.features.group_dim(g) for g in ("user", "item", "context")}
    return DenseArch({g: d for g, d in dims.items() if d > 0}, cfg.model).train()


def _step(dense: torch.nn.Module, inputs: Any) -> None:
    groups, click, conversion, item_ids = inputs
    loss, _ = dense(groups, click, conversion, item_ids)
    loss.backward()


def flops_per_sample(cfg: DmmpConfig, batch: int) -> dict[str, Any]:
    """FLOPs of one DenseArch forward + backward at `batch`, per sample; exact, not timed.
    Matrix products the counter does not know (in-place or vector forms) would be missed, so
    their presence is an error rather than a silent undercount."""
    dense = _dense(cfg)
    inputs = dense_step_inputs(cfg, batch)
    _step(dense, inputs)  # the first step creates lazy state; count the second
    counter = FlopCounterMode(display=False)
    recorder = _GemmRecorder()
    with counter, recorder:
        _step(dense, inputs)
    if recorder.uncounted:
        raise RuntimeError(f"matrix products the flop counter misses: {recorder.uncounted}")
    total = counter.get_total_flops()
    return {
        "batch": batch,
        "flop_per_sample": total / batch,
        "mflop_per_sample": round(total / batch / 1e6, 3),
    }


def system_mflops(cfg: DmmpConfig, system: str) -> float:
    """MFLOP per sample of one training step of a benchmarked system at the config's batch:
    dmmp and the replica share DenseArch (lookups and pooling are not FLOPs); torch-rechub's
    models are counted on the meta device (shapes only, no 1 GB of tables)."""
    if system in ("dmmp", "replica"):
        return flops_per_sample(cfg, cfg.data.batch_size)["mflop_per_sample"]
    from benchmarks.rechub import RechubBatch, RechubModel
    from benchmarks.sparse_batches import random_batches

    batch = random_batches(cfg, 1, hist_len=20)[0]
    with torch.device("meta"):
        model = RechubModel(cfg, system.removeprefix("rechub_"))  # type: ignore[arg-type]
    data = RechubBatch(batch, cfg)
    data.x = {k: v.to("meta") for k, v in data.x.items()}
    data.click, data.conversion = data.click.to("meta"), data.conversion.to("meta")
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = model(data)
        loss.backward()
    return round(counter.get_total_flops() / batch.size / 1e6, 3)


# matrix products torch's flop counter has no formula for
_UNCOUNTED = (aten.addmm_, aten.mv, aten.addmv, aten.dot, aten.vdot, aten.addbmm, aten.einsum)


class _GemmRecorder(TorchDispatchMode):
    """Records every matrix product's shape and operand layouts, and the names of any matrix
    products the flop counter would miss."""

    def __init__(self) -> None:
        super().__init__()
        self.gemms: Counter[Gemm] = Counter()
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        packet = func.overloadpacket
        if packet in _UNCOUNTED:
            self.uncounted[str(func)] += 1
        if packet in (aten.mm, aten.addmm):  # every overload (.out too), as the flop counter
            a, b = (args[0], args[1]) if packet is aten.mm else (args[1], args[2])
            self.gemms[(a.shape[0], a.shape[1], b.shape[1], _transposed(a), _transposed(b))] += 1
        return func(*args, **(kwargs or {}))


def _transposed(t: torch.Tensor) -> bool:
    return t.dim() == 2 and t.stride(0) == 1 and t.shape[1] > 1


def step_gemms(cfg: DmmpConfig, batch: int) -> Counter[Gemm]:
    """Every matrix product of one DenseArch forward + backward, with its count."""
    dense = _dense(cfg)
    inputs = dense_step_inputs(cfg, batch)
    _step(dense, inputs)
    recorder = _GemmRecorder()
    with recorder:
        _step(dense, inputs)
    return recorder.gemms


def _operand(rows: int, cols: int, transposed: bool) -> torch.Tensor:
    t = torch.randn(cols, rows) if transposed else torch.randn(rows, cols)
    return t.T if transposed else t


def time_gemms(gemms: dict[Gemm, int], threads: int, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of this step's products on `threads` threads: the step's product mix replayed
    until `seconds` have passed (the first pass is a warm-up). Also GFLOP per CPU second of
    this process, the rate it reaches while it holds the cores (other jobs share them)."""
    torch.set_num_threads(threads)
    ops = [(_operand(m, k, ta), _operand(k, n, tb), c) for (m, k, n, ta, tb), c in gemms.items()]
    flops_per_pass = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] * c for a, b, c in ops)

    def one_pass() -> None:
        for a, b, c in ops:
            for _ in range(c):
                torch.mm(a, b)

    one_pass()
    passes, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        one_pass()
        passes += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    done = flops_per_pass * passes / 1e9
    return {"gflops": done / elapsed, "gflops_per_cpu_s": done / cpu, "passes": passes}


def _worker(gemms: dict[Gemm, int], seconds: float, start: Any, out: Any) -> None:
    start.wait()
    out.put(time_gemms(gemms, 1, seconds)["gflops"])


def time_gemms_processes(
    gemms: dict[Gemm, int], processes: int, seconds: float = 2.0
) -> dict[str, Any]:
    """Aggregate GFLOP/s of `processes` single-thread processes replaying the mix at once, the
    way the trainers run (one thread per process)."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(gemms, seconds, start, out)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return {"gflops": sum(rates), "per_process": rates}


def roofline(cfg: DmmpConfig, batch: int, reps: int, seconds: float) -> dict[str, Any]:
    """FLOPs per sample, the GEMM rate at the step's shapes on 1 and 2 threads and 2
    single-thread processes (medians of `reps`), and the samples/s each rate allows."""
    from benchmarks.common import summarise

    flops = flops_per_sample(cfg, batch)
    gemms = dict(step_gemms(cfg, batch))
    threads_before = torch.get_num_threads()
    rates: dict[str, list[float]] = {"1_thread": [], "2_threads": [], "2_processes": []}
    per_cpu_s: list[float] = []
    for _ in range(reps):
        one = time_gemms(gemms, 1, seconds)
        rates["1_thread"].append(one["gflops"])
        per_cpu_s.append(one["gflops_per_cpu_s"])
        rates["2_threads"].append(time_gemms(gemms, 2, seconds)["gflops"])
        rates["2_processes"].append(time_gemms_processes(gemms, 2, seconds)["gflops"])
    torch.set_num_threads(threads_before)
    per_sample = flops["mflop_per_sample"] * 1e6
    summary = {k: summarise(v, 1) for k, v in rates.items()}
    return {
        **flops,
        "gemm_seconds_per_rep": seconds,
        "distinct_gemms": len(gemms),
        "gemm_gflops": summary,
        "gemm_gflops_per_cpu_s_1_thread": summarise(per_cpu_s, 1),
        "roofline_samples_per_s": {
            k: round(s["median"] * 1e9 / per_sample) for k, s in summary.items()
        },
    }


def dense_step_ms(cfg: DmmpConfig, batch: int, steps: int, reps: int) -> dict[str, Any]:
    """CPU ms (and wall ms) of one DenseArch step (forward, backward, the trainer's fused
    AdamW) on this thread, medians of `reps` repetitions of `steps` steps: the dense part's
    time without the tables, the input pipeline or the other rank."""
    from benchmarks.common import summarise

    dense = _dense(cfg)
    inputs = dense_step_inputs(cfg, batch)
    opt = torch.optim.AdamW(dense.parameters(), lr=cfg.train.dense_lr, fused=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        _step(dense, inputs)
        opt.step()

    for _ in range(3):
        step()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        wall.append((time.perf_counter() - t0) / steps * 1e3)
        cpu.append((time.process_time() - c0) / steps * 1e3)
    return {"cpu_ms": summarise(cpu, 1), "wall_ms": summarise(wall, 1)}


def step_breakdown(roof: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where DMMP's step goes, in CPU time per process (robust to other jobs on the cores,
    which wall time is not): its matrix products at the GEMM rate per CPU second, the rest of
    the dense step (the dense step measured alone), and everything else (tables, input
    distribution, pipeline, collectives)."""
    out = {}
    rate = roof["gemm_gflops_per_cpu_s_1_thread"]["median"] * 1e9
    dense_ms = roof["dense_step"]["cpu_ms"]["median"]
    for run in runs:
        if run.get("system") != "dmmp" or "cpu_us_per_sample_summary" not in run:
            continue
        ws = run["world_size"]
        batch = run["global_batch"] // ws
        step_ms = run["cpu_us_per_sample_summary"]["median"] * batch / 1e3
        gemm_ms = roof["flop_per_sample"] * batch / rate * 1e3
        out[f"dmmp@{ws}"] = {
            "cpu_ms_per_step": round(step_ms, 1),
            "matrix_products": round(gemm_ms / step_ms, 3),
            "rest_of_dense_step": round(max(dense_ms - gemm_ms, 0.0) / step_ms, 3),
            "tables_pipeline_collectives": round(max(step_ms - dense_ms, 0.0) / step_ms, 3),
        }
    return out


# the GEMM rate that bounds a run of this many single-thread processes
RATE_FOR_PROCESSES = {1: "1_thread", 2: "2_processes"}


def roofline_shares(roof: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each run's samples/s over its roofline: the GEMM rate of as many single-thread
    processes as it ran over its own system's FLOPs per sample."""
    out = {}
    flops = roof.get("mflop_per_sample_by_system", {})
    for run in runs:
        rate_key = RATE_FOR_PROCESSES.get(run.get("world_size", 0))
        if "samples_per_s_summary" not in run or rate_key is None or run["system"] not in flops:
            continue
        limit = roof["gemm_gflops"][rate_key]["median"] * 1e3 / flops[run["system"]]
        share = run["samples_per_s_summary"]["median"] / limit
        out[f"{run['system']}@{run['world_size']}"] = round(share, 3)
    return out
