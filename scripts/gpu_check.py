"""`make gpu-check`: the one command to run on a fresh CUDA machine, after `make test`.

    python scripts/gpu_check.py [--out runs/gpu_check] [--gpus N] [--steps 200]
    python scripts/gpu_check.py --dry-run            # the steps and their commands, nothing run
    python scripts/gpu_check.py --cpu-smoke          # the same steps on 2 CPU ranks, tiny world

Steps, in order; each records its status, seconds, figures and commands in OUT/gpu_check.json,
and a step whose input failed is skipped:
  stack         the CUDA build of fbgemm-gpu is installed (not fbgemm-gpu-cpu), at the pinned
                versions of torch / torchrec / fbgemm (Makefile), and its ops run on the GPU
  world         a synthetic world (configs/synthetic.yaml) to train on
  plan          `dmmp-rec plan` for the local GPUs (N ranks, one host, cuda)
  train         `torchx run -s local_cwd launchers/dmmp.py:train` on all N GPUs (NCCL), with
                that plan, `--steps` steps
  elastic       the same job with one rank killed (train.fault_at_step): the elastic agent must
                restart the group, which resumes from the last checkpoint and finishes
  eval          `dmmp-rec eval` of the trained run on N GPUs (torchrun)
  export        `dmmp-rec export` of the GPU-written checkpoint (one CPU process)
  retrieve      `dmmp-rec retrieve` from the export
  bench_train   benchmarks/train_worker.py (dmmp) on N GPUs: training samples/s
  bench_latency user and item tower latency on one GPU, batch 1 / 64 / 1024 (p50 / p99 ms)
The exit status is 0 only when every step passed. `--cpu-smoke` checks this orchestration on a
machine without a GPU (tests/test_gpu_check.py); its figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = "configs/synthetic.yaml"
SMOKE_WORLD = [  # --cpu-smoke: the test suite's tiny world (tests/support.py)
    "synthetic.num_users=2000",
    "synthetic.num_items=3000",
    "synthetic.num_impressions=60000",
    "synthetic.num_days=6",
    "synthetic.chunk_rows=30000",
    "data.batch_size=128",
    "data.shuffle_buffer=2048",
    "model.teacher.expert_dims=[32]",
    "model.teacher.tower_dims=[16]",
    "model.student.tower_dims=[32]",
    "model.student.out_dim=8",
    "model.student.gate_dims=[8]",
]
STEPS = (
    "stack",
    "world",
    "plan",
    "train",
    "elastic",
    "eval",
    "export",
    "retrieve",
    "bench_train",
    "bench_latency",
)
NEEDS = {
    "plan": "world",
    "train": "plan",
    "elastic": "plan",
    "eval": "train",
    "export": "train",
    "retrieve": "export",
    "bench_train": "world",
    "bench_latency": "train",
}


class CheckFailed(RuntimeError):
    """A step's expectation failed; the message says which and with what figures."""


@dataclass
class Check:
    out: Path
    gpus: int
    steps: int
    device: str  # "cuda", or "cpu" for --cpu-smoke
    dry_run: bool = False
    overrides: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def every(self) -> int:  # checkpoint interval: the elastic step resumes from step `every`
        return max(1, self.steps // 2)

    def job(self, *extra: str) -> list[str]:
        """Config overrides every command of the check shares."""
        return [*self.overrides, f"data.path={self.world}", f"train.device={self.device}", *extra]

    def run(self, name: str, argv: list[str]) -> str:
        """Run a command from the repository root, its output in OUT/logs/NAME.log."""
        self.commands.append(shlex.join(argv))
        if self.dry_run:
            return ""
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
        log.write_text(f"$ {shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-1500:]
            raise CheckFailed(f"exit status {proc.returncode} (log {log}):\n{tail}")
        return proc.stdout


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmmp_rec.cli", *args]


def _torchrun(check: Check, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={check.gpus}", *args]  # fmt: skip


def _makefile_pins() -> dict[str, str]:
    text = (REPO / "Makefile").read_text()
    pins = {}
    for dist, var in (("torch", "TORCH"), ("torchrec", "TORCHREC"), ("fbgemm", "FBGEMM")):
        pins[dist] = re.search(rf"^{var}_VERSION := (\S+)", text, re.M).group(1)
    return pins


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def step_stack(check: Check) -> dict[str, Any]:
    check.commands.append(f"(in process) pinned versions, fbgemm op on {check.device}")
    if check.dry_run:
        return {}
    import torch

    pins = _makefile_pins()
    want_fbgemm, other = ("fbgemm-gpu", "fbgemm-gpu-cpu")
    if check.device == "cpu":
        want_fbgemm, other = other, want_fbgemm
    found = {d: _installed(d) for d in ("torch", "torchrec", want_fbgemm, other)}
    figures: dict[str, Any] = {"pins": pins, "installed": found, "torch_cuda": torch.version.cuda}
    problems = []
    if not (found["torch"] or "").startswith(pins["torch"]):
        problems.append(f"torch {found['torch']}, pinned {pins['torch']}")
    if found["torchrec"] != pins["torchrec"]:
        problems.append(f"torchrec {found['torchrec']}, pinned {pins['torchrec']}")
    if found[want_fbgemm] != pins["fbgemm"]:
        problems.append(f"{want_fbgemm} {found[want_fbgemm]}, pinned {pins['fbgemm']}")
    if found[other] is not None:
        problems.append(f"{other} {found[other]} is installed too (make clean && make install)")
    if check.device == "cuda":
        if torch.version.cuda is None or not torch.cuda.is_available():
            problems.append(f"torch {torch.__version__} sees no CUDA device")
        else:
            figures["gpus"] = [torch.cuda.get_device_name(i) for i in range(check.gpus)]
    if problems:
        raise CheckFailed("; ".join(problems))
    import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm; a mismatched build fails here)

    lengths = torch.tensor([2, 0, 3], dtype=torch.int64, device=check.device)
    offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(lengths).cpu().tolist()
    if offsets != [0, 2, 2, 5]:
        raise CheckFailed(f"fbgemm's complete_cumsum on {check.device} gave {offsets}")
    figures["fbgemm_op_on"] = check.device
    return figures


def step_world(check: Check) -> dict[str, Any]:
    check.run("world", _cli("synth", "--config", CONFIG, "--quiet", *check.job()))
    if check.dry_run:
        return {}
    return {k: v for k, v in _read(check.world / "world.json").items() if isinstance(v, int)}


def step_plan(check: Check) -> dict[str, Any]:
    plan = check.out / "plan.json"
    argv = _cli("plan", "--config", CONFIG, "--world-size", str(check.gpus))
    argv += ["--local-world-size", str(check.gpus), "--device", check.device, "--out", str(plan)]
    check.run("plan", argv + check.job())
    if check.dry_run:
        return {}
    meta = _read(plan)["meta"]
    modules = _read(plan)["modules"]  # {module path: {table: plan}}: every sharded module
    kinds = {t["sharding_type"] for tables in modules.values() for t in tables.values()}
    return {"world_size": meta["world_size"], "sharding_types": sorted(kinds)}


def _torchx_train(check: Check, name: str, restarts: int, *extra: str) -> dict[str, Any]:
    """The launcher component on local_cwd, waited for; returns the run's summary.json."""
    run = check.out / name
    args = ["--nproc_per_node", str(check.gpus), "--max_restarts", str(restarts)]
    args += ["--gpu", str(check.gpus)] if check.device == "cuda" else []
    args += ["--config", CONFIG, "--", *check.job(f"train.out={run}", *extra)]
    argv = ["torchx", "run", "-s", "local_cwd", "launchers/dmmp.py:train", *args]
    check.commands.append(shlex.join(argv))
    if check.dry_run:
        return {}
    from torchx.runner import get_runner
    from torchx.specs import AppState

    # the component's workers run `torchrun` from PATH: this interpreter's
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    logs = check.out / "logs" / name
    with get_runner() as runner:
        handle = runner.run_component(
            "launchers/dmmp.py:train", args, "local_cwd", cfg={"log_dir": str(logs)}
        )
        status = runner.wait(handle, wait_interval=2)
    if status is None or status.state != AppState.SUCCEEDED:
        raise CheckFailed(f"torchx job {handle}: {status} (logs under {logs})")
    return _read(run / "summary.json")


def step_train(check: Check) -> dict[str, Any]:
    plan = f"sharding.plan={check.out / 'plan.json'}"
    every = f"train.checkpoint_every={check.every}"
    summary = _torchx_train(check, "run", 0, f"train.max_steps={check.steps}", every, plan)
    if check.dry_run:
        return {}
    losses = {k: v for k, v in summary["last_logged"].items() if k.startswith("loss/")}
    if summary["world_size"] != check.gpus or not losses:
        raise CheckFailed(f"trained on {summary['world_size']} ranks, losses {losses}")
    keep = ("world_size", "global_batch", "samples_per_s", "seconds", "validation")
    return {k: summary[k] for k in keep}


def step_elastic(check: Check) -> dict[str, Any]:
    fault = min(check.steps, check.every + max(1, check.every // 2))
    extra = [f"train.max_steps={check.steps}", f"train.checkpoint_every={check.every}"]
    extra += [f"train.fault_at_step={fault}", f"sharding.plan={check.out / 'plan.json'}"]
    summary = _torchx_train(check, "run_fault", 2, *extra)
    if check.dry_run:
        return {}
    if summary["resumed_from_step"] != check.every or summary["steps"] != check.steps:
        raise CheckFailed(
            f"rank killed after step {fault}: expected a resume from step {check.every} to "
            f"step {check.steps}, got {summary['resumed_from_step']} -> {summary['steps']}"
        )
    return {"killed_after_step": fault, "resumed_from_step": summary["resumed_from_step"]}


def step_eval(check: Check) -> dict[str, Any]:
    report = check.out / "eval.json"
    argv = _torchrun(check, "-m", "dmmp_rec.cli", "eval", "--config", CONFIG, "--quiet")
    argv += ["--checkpoint", str(check.out / "run"), "--out", str(report), "--oracle-users", "500"]
    check.run("eval", argv + check.job(f"sharding.plan={check.out / 'plan.json'}"))
    if check.dry_run:
        return {}
    data = _read(report)
    retrieval = {k: v for k, v in data["retrieval"].items() if isinstance(v, float | dict)}
    teacher = {task: data["teacher"][task]["auc"] for task in ("ctr", "cvr", "ctcvr")}
    return {"teacher_auc": teacher, "retrieval": retrieval, "world_size": check.gpus}


def step_export(check: Check) -> dict[str, Any]:
    argv = _cli("export", "--checkpoint", str(check.out / "run"), "--quiet")
    check.run("export", argv + ["--out", str(check.out / "export"), "--recall-queries", "200"])
    if check.dry_run:
        return {}
    manifest = _read(check.out / "export" / "manifest.json")
    return {
        "items": manifest["num_items"],
        "train_step": manifest["train_step"],
        "vector_dim": manifest["vector_dim"],
        "approx_recall": manifest["approx"]["recall"],
        "query_max_abs_diff": manifest["query_max_abs_diff"],
        "seconds": manifest["export_seconds"],
    }


def step_retrieve(check: Check) -> dict[str, Any]:
    argv = _cli("retrieve", "--export", str(check.out / "export"), "--demo-users", "5", "-k", "10")
    t0 = time.perf_counter()
    out = check.run("retrieve", argv + ["--format", "jsonl"])
    if check.dry_run:
        return {}
    users = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    found = [len(u["items"]) for u in users]
    if found != [10] * 5:
        raise CheckFailed(f"expected 5 users x 10 candidates, got {found}")
    for user in users:
        fused = [c["fused"] for c in user["items"]]
        if fused != sorted(fused, reverse=True):
            raise CheckFailed(f"{user['user']}: candidates not in fused-score order: {fused}")
    return {"users": 5, "k": 10, "seconds": round(time.perf_counter() - t0, 2)}


def step_bench_train(check: Check) -> dict[str, Any]:
    raw = check.out / "bench_train.json"
    argv = _torchrun(check, "benchmarks/train_worker.py", "--system", "dmmp", "--config", CONFIG)
    sizes = ("1", "3", "2") if check.device == "cpu" else ("5", "20", "3")  # smoke: tiny
    argv += ["--out", str(raw), "--warmup", sizes[0], "--steps", sizes[1], "--reps", sizes[2]]
    check.run("bench_train", argv + check.job())
    if check.dry_run:
        return {}
    rates = sorted(_read(raw)["samples_per_s"])
    return {"samples_per_s": rates, "median": rates[len(rates) // 2], "world_size": check.gpus}


def step_bench_latency(check: Check) -> dict[str, Any]:
    check.commands.append("(in process) benchmarks.tower_latency.tower_latency")
    if check.dry_run:
        return {}
    from benchmarks.tower_latency import tower_latency
    from dmmp_rec.config import load_config

    calls = 10 if check.device == "cpu" else 100  # smoke: tiny
    cfg = load_config(REPO / CONFIG, check.job())
    return tower_latency(cfg, check.out / "run", check.device, calls)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


FUNCTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    name: globals()[f"step_{name}"] for name in STEPS
}


def run_check(check: Check) -> dict[str, Any]:
    """Every step in order; returns the report written to OUT/gpu_check.json."""
    report: dict[str, Any] = {
        "mode": "dry-run" if check.dry_run else ("gpu" if check.device == "cuda" else "cpu-smoke"),
        "gpus": check.gpus,
        "steps_trained": check.steps,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": {},
    }
    results = report["results"]
    for name in STEPS:
        need = NEEDS.get(name)
        if need and results[need]["status"] not in ("ok", "listed"):
            results[name] = {"status": "skipped", "reason": f"{need} did not pass"}
            continue
        first = len(check.commands)
        t0 = time.perf_counter()
        try:
            figures = FUNCTIONS[name](check)
            results[name] = {"status": "listed" if check.dry_run else "ok", **figures}
        except Exception as e:  # every failure is recorded; the exit status reports it
            results[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        results[name]["commands"] = check.commands[first:]
        print(f"[gpu-check] {name}: {results[name]['status']} ({results[name]['seconds']} s)")
    report["passed"] = all(r["status"] in ("ok", "listed") for r in results.values())
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "runs/gpu_check"))
    p.add_argument("--gpus", type=int, default=None, help="default: every local GPU (2 on CPU)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dry-run", action="store_true", help="list the steps' commands only")
    p.add_argument("--cpu-smoke", action="store_true", help="2 CPU ranks, tiny world (no GPU)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="key.path=value",
        help="a config override for every step (repeatable)",
    )
    args = p.parse_args(argv)
    device = "cpu" if args.cpu_smoke else "cuda"
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if device == "cuda" and not args.dry_run else 2
    if gpus < 1:
        print("gpu-check: no GPU found (torch.cuda.device_count() is 0)", file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = (SMOKE_WORLD if args.cpu_smoke else []) + args.set
    check = Check(out, gpus, args.steps, device, args.dry_run, overrides)
    report = run_check(check)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"[gpu-check] {'passed' if report['passed'] else 'FAILED'}: {path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
