"""The training steps: world, plan, the torchx job (finite loss at every logged step), the
elastic restart, and the training benchmark."""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from dmmp_rec.distributed.launch import torchrun_command
from gpu_checks.core import CONFIG, Check, CheckFailed, cli, read_json


def step_world(check: Check) -> dict[str, Any]:
    check.run("world", cli("synth", "--config", CONFIG, "--quiet", *check.job()))
    if check.dry_run:
        return {}
    return {k: v for k, v in read_json(check.world / "world.json").items() if isinstance(v, int)}


def step_plan(check: Check) -> dict[str, Any]:
    plan = check.out / "plan.json"
    argv = cli("plan", "--config", CONFIG, "--world-size", str(check.gpus))
    argv += ["--local-world-size", str(check.gpus), "--device", check.device, "--out", str(plan)]
    check.run("plan", argv + check.job())
    if check.dry_run:
        return {}
    saved = read_json(plan)
    kinds = {t["sharding_type"] for tables in saved["modules"].values() for t in tables.values()}
    figures = {"world_size": saved["meta"]["world_size"], "sharding_types": sorted(kinds)}
    if "hbm_cap_gb" in saved["meta"]:  # cuda: the GPU memory the planner assumed, and why
        figures["hbm_cap_gb"] = saved["meta"]["hbm_cap_gb"]
        figures["hbm_cap_source"] = saved["meta"]["hbm_cap_source"]
    return figures


def logged_losses(run: Path) -> dict[int, dict[str, float]]:
    """{step: {loss tag: value}} of every step the trainer logged (TensorBoard scalars)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    steps: dict[int, dict[str, float]] = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("loss/"):
            for event in events.Scalars(tag):
                steps.setdefault(event.step, {})[tag] = event.value
    return steps


def check_finite_losses(run: Path, last_step: int) -> int:
    """The number of logged steps; CheckFailed when any logged loss is NaN or infinite, or
    when the log does not reach `last_step`."""
    steps = logged_losses(run)
    bad = {
        s: {k: v for k, v in terms.items() if not math.isfinite(v)} for s, terms in steps.items()
    }
    bad = {s: terms for s, terms in sorted(bad.items()) if terms}
    if bad:
        first = next(iter(bad))
        raise CheckFailed(
            f"{run}: non-finite loss at {len(bad)} of {len(steps)} logged steps, first at step "
            f"{first}: {bad[first]}"
        )
    if not steps or max(steps) != last_step:
        raise CheckFailed(
            f"{run}: losses logged up to step {max(steps, default=0)}, not {last_step}"
        )
    return len(steps)


def torchx_train(check: Check, name: str, restarts: int, *extra: str) -> dict[str, Any]:
    """The launcher component on local_cwd, waited for; returns the run's summary.json."""
    run = check.out / name
    args = ["--nproc_per_node", str(check.gpus), "--max_restarts", str(restarts)]
    args += ["--gpu", str(check.gpus)] if check.device == "cuda" else []
    job = [f"train.out={run}", f"train.log_every={check.log_every}", *extra]
    if check.nan_at_step is not None:
        job.append(f"train.nan_at_step={check.nan_at_step}")
    args += ["--config", CONFIG, "--", *check.job(*job)]
    argv = ["torchx", "run", "-s", "local_cwd", "launchers/dmmp.py:train", *args]
    check.commands.append(shlex.join(argv))
    if check.dry_run:
        return {}
    from torchx.runner import get_runner
    from torchx.specs import AppState

    # the component's workers run `torchrun` from PATH: this interpreter's
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    logs = check.out / "logs" / name
    component = str(Path(__file__).resolve().parents[2] / "launchers" / "dmmp.py") + ":train"
    with get_runner() as runner:
        handle = runner.run_component(component, args, "local_cwd", cfg={"log_dir": str(logs)})
        try:
            status = runner.wait(handle, wait_interval=2)
        except BaseException:  # the step's deadline: stop the job's workers too
            runner.cancel(handle)
            raise
    if status is None or status.state != AppState.SUCCEEDED:
        raise CheckFailed(f"torchx job {handle}: {status} (logs under {logs})")
    return read_json(run / "summary.json")


def step_train(check: Check) -> dict[str, Any]:
    plan = f"sharding.plan={check.out / 'plan.json'}"
    every = f"train.checkpoint_every={check.every}"
    summary = torchx_train(check, "run", 0, f"train.max_steps={check.steps}", every, plan)
    if check.dry_run:
        return {}
    logged = check_finite_losses(check.out / "run", check.steps)
    if (
        summary["world_size"] != check.gpus
        or summary.get("device", "").split(":")[0] != check.device
    ):
        raise CheckFailed(
            f"trained on {summary['world_size']} x {summary.get('device')}, expected "
            f"{check.gpus} x {check.device}"
        )
    keep = ("world_size", "device", "backend", "gpu_name", "precision", "global_batch")
    keep += ("samples_per_s", "seconds", "validation")
    return {"logged_steps_finite": logged, **{k: summary.get(k) for k in keep}}


def step_elastic(check: Check) -> dict[str, Any]:
    fault = min(check.steps, check.every + max(1, check.every // 2))
    extra = [f"train.max_steps={check.steps}", f"train.checkpoint_every={check.every}"]
    extra += [f"train.fault_at_step={fault}", f"sharding.plan={check.out / 'plan.json'}"]
    summary = torchx_train(check, "run_fault", 2, *extra)
    if check.dry_run:
        return {}
    if summary["resumed_from_step"] != check.every or summary["steps"] != check.steps:
        raise CheckFailed(
            f"rank killed after step {fault}: expected a resume from step {check.every} to "
            f"step {check.steps}, got {summary['resumed_from_step']} -> {summary['steps']}"
        )
    check_finite_losses(check.out / "run_fault", check.steps)
    return {"killed_after_step": fault, "resumed_from_step": summary["resumed_from_step"]}


def step_bench_train(check: Check) -> dict[str, Any]:
    raw = check.out / "bench_train.json"
    worker = ["benchmarks/train_worker.py", "--system", "dmmp", "--config", CONFIG]
    argv = torchrun_command(check.gpus, worker)
    sizes = ("1", "3", "2") if check.device == "cpu" else ("5", "20", "3")  # smoke: tiny
    argv += ["--out", str(raw), "--warmup", sizes[0], "--steps", sizes[1], "--reps", sizes[2]]
    check.run("bench_train", argv + check.job())
    if check.dry_run:
        return {}
    rates = sorted(read_json(raw)["samples_per_s"])
    if not all(r > 0 and math.isfinite(r) for r in rates):
        raise CheckFailed(f"training benchmark rates {rates}")
    return {"samples_per_s": rates, "median": rates[len(rates) // 2], "world_size": check.gpus}
