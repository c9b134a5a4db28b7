"""`make gpu-check`: the one command to run on a fresh CUDA machine, after `make test`.

    python scripts/gpu_check.py [--out runs/gpu_check] [--gpus N] [--steps 200]
    python scripts/gpu_check.py --dry-run            # the steps and their commands, nothing run
    python scripts/gpu_check.py --cpu-smoke          # the same steps on 2 CPU ranks, tiny world

Runs from any directory (paths come from this file's location). Steps, in order; each records
its status, seconds, figures and commands in OUT/gpu_check.json, has a deadline
(--step-timeout; its processes are killed when it passes), and a step whose input failed is
skipped:
  stack         the CUDA build of fbgemm-gpu is installed (not fbgemm-gpu-cpu), at the pinned
                versions of torch / torchrec / fbgemm (Makefile), the GPUs usable (cuda_probe),
                and fbgemm's ops run on the GPU
  world         a synthetic world (configs/synthetic.yaml) to train on
  plan          `dmmp-rec plan` for the local GPUs (N ranks, one host, cuda); the GPU memory
                it assumed is recorded
  train         `torchx run -s local_cwd launchers/dmmp.py:train` on all N GPUs (NCCL), with
                that plan, `--steps` steps: the loss of every logged step must be finite, and
                the run must report N x cuda
  elastic       the same job with one rank killed (train.fault_at_step): the elastic agent must
                restart the group, which resumes from the last checkpoint, finishes, finitely
  eval          `dmmp-rec eval` of the trained run on N GPUs (torchrun)
  eval_cpu      the same checkpoint evaluated in one CPU process: every metric must equal the
                GPU's within the tolerances of gpu_checks/evaluation.py
  export        `dmmp-rec export` of the GPU-written checkpoint (one CPU process)
  retrieve      `dmmp-rec retrieve` from the export
  bench_train   benchmarks/train_worker.py (dmmp) on N GPUs: training samples/s
  bench_latency the served path (the export's user side + FAISS search, as `retrieve` runs it)
                at batch 1 / 64 / 1024 (p50 / p99 ms)
The exit status is 0 only when every step passed. `--cpu-smoke` checks this orchestration on a
machine without a GPU (tests/test_gpu_check.py); its figures say nothing about GPUs.
`--inject-nan-at-step K` poisons training after step K (train.nan_at_step): the check must fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_checks/, from any directory
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # dmmp_rec/, benchmarks/

from gpu_checks.core import REPO, SMOKE_WORLD, Check, deadline  # noqa: E402
from gpu_checks.evaluation import step_eval, step_eval_cpu  # noqa: E402
from gpu_checks.serving import step_bench_latency, step_export, step_retrieve  # noqa: E402
from gpu_checks.stack import step_stack  # noqa: E402
from gpu_checks.training import (  # noqa: E402
    step_bench_train,
    step_elastic,
    step_plan,
    step_train,
    step_world,
)

FUNCTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "stack": step_stack,
    "world": step_world,
    "plan": step_plan,
    "train": step_train,
    "elastic": step_elastic,
    "eval": step_eval,
    "eval_cpu": step_eval_cpu,
    "export": step_export,
    "retrieve": step_retrieve,
    "bench_train": step_bench_train,
    "bench_latency": step_bench_latency,
}
STEPS = tuple(FUNCTIONS)
NEEDS = {
    "plan": "world",
    "train": "plan",
    "elastic": "train",
    "eval": "train",
    "eval_cpu": "eval",
    "export": "train",
    "retrieve": "export",
    "bench_train": "world",
    "bench_latency": "export",
}


def with_needs(only: list[str]) -> list[str]:
    """The steps of `only` and every step they need, in the check's order."""
    wanted = set()
    for name in only:
        while name is not None and name not in wanted:
            wanted.add(name)
            name = NEEDS.get(name)
    return [s for s in STEPS if s in wanted]


def run_check(check: Check, steps: list[str] | None = None) -> dict[str, Any]:
    """`steps` (default: every step) in order; returns the report written to
    OUT/gpu_check.json."""
    report: dict[str, Any] = {
        "mode": "dry-run" if check.dry_run else ("gpu" if check.device == "cuda" else "cpu-smoke"),
        "gpus": check.gpus,
        "steps_trained": check.steps,
        "step_timeout_s": check.step_timeout_s,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": {},
    }
    results = report["results"]
    for name in steps or STEPS:
        need = NEEDS.get(name)
        if need and results[need]["status"] not in ("ok", "listed"):
            results[name] = {"status": "skipped", "reason": f"{need} did not pass"}
            continue
        first = len(check.commands)
        t0 = time.perf_counter()
        try:
            with deadline(check.step_timeout_s):
                figures = FUNCTIONS[name](check)
            results[name] = {"status": "listed" if check.dry_run else "ok", **figures}
        except Exception as e:  # every failure is recorded; the exit status reports it
            results[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        results[name]["commands"] = check.commands[first:]
        print(f"[gpu-check] {name}: {results[name]['status']} ({results[name]['seconds']} s)")
    report["passed"] = all(r["status"] in ("ok", "listed") for r in results.values())
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", default=str(REPO / "runs/gpu_check"))
    p.add_argument("--gpus", type=int, default=None, help="default: every local GPU (2 on CPU)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dry-run", action="store_true", help="list the steps' commands only")
    p.add_argument("--cpu-smoke", action="store_true", help="2 CPU ranks, tiny world (no GPU)")
    p.add_argument("--step-timeout", type=float, default=1800.0, help="seconds per step")
    p.add_argument("--only", default=None, help="comma-separated steps (and what they need)")
    p.add_argument(
        "--inject-nan-at-step",
        type=int,
        default=None,
        metavar="K",
        help="set the dense parameters to NaN after training step K: the check must fail",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="key.path=value",
        help="a config override for every step (repeatable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    device = "cpu" if args.cpu_smoke else "cuda"
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if device == "cuda" and not args.dry_run else 2
    if gpus < 1:
        print("gpu-check: no GPU found (torch.cuda.device_count() is 0)", file=sys.stderr)
        return 1
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = sorted(set(only or ()) - set(STEPS))
    if unknown:
        print(f"gpu-check: unknown steps {unknown}; known: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()  # relative to where it was called from
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(REPO)  # torchx's local_cwd jobs run in the working directory
    overrides = (SMOKE_WORLD if args.cpu_smoke else []) + args.set
    check = Check(out, gpus, args.steps, device, args.dry_run, overrides)
    check.step_timeout_s = args.step_timeout
    check.nan_at_step = args.inject_nan_at_step
    report = run_check(check, with_needs(only) if only else None)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"[gpu-check] {'passed' if report['passed'] else 'FAILED'}: {path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
