"""Training measurements under torchrun: one job per (system, processes), their statistics.

Each job is `train_worker.py` in its own process group with a time limit; its JSON result gives
samples/s and CPU time per sample per repetition, summarised here with the ratios DMMP /
competitor and each system's 1 -> 2 process scaling.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, read_json, summarise
from dmmp_rec.distributed.launch import torchrun_command

# One thread per process everywhere: 1 process = 1 core, 2 processes = 2 cores, and no OpenMP
# thread waits for a sibling descheduled by the other jobs sharing these cores.
THREADS = 1


def cmdline(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def run_with_timeout(cmd: list[str], timeout_s: float) -> int | str:
    """Run a torchrun job in its own process group; past `timeout_s` kill the whole group
    (torchrun and its workers) and return "timeout", else the exit status. gloo ranks can
    hang in shutdown after the measurement is written; one such hang must not stop the run."""
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout"


def train_runs(
    out: Path,
    config: str,
    overrides: list[str],
    runs: list[tuple[str, int]],
    steps: dict[str, tuple[int, int]],
    tag: str,
    reps: int,
    timeout_s: float,
    extra: list[str] | None = None,
    overrides_by_processes: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """samples/s and memory of each (system, world size) run, the ratios DMMP / competitor
    and each system's 1 -> 2 process scaling."""
    results: dict[str, Any] = {"config": config, "runs": [], "commands": []}
    for system, ws in runs:
        path = out / "raw" / f"{tag}_{system}_{ws}.json"
        args = ["--system", system, "--config", str(REPO / config), "--out", str(path)]
        warmup, n = steps[system]
        args += ["--warmup", str(warmup), "--steps", str(n), "--reps", str(reps)]
        args += [*(extra or []), *overrides, *(overrides_by_processes or {}).get(ws, [])]
        cmd = torchrun_command(ws, [str(REPO / "benchmarks/train_worker.py"), *args])
        print(f"[{tag}] {system} on {ws} process(es)", flush=True)
        path.unlink(missing_ok=True)
        status = run_with_timeout(cmd, timeout_s)
        results["commands"].append(cmdline(cmd[1:]))
        if not path.is_file() or (status != 0 and status != "timeout"):
            error = "timeout" if status == "timeout" else f"exit {status}"
            results["runs"].append({"system": system, "world_size": ws, "error": error})
            continue
        raw = read_json(path)
        if status == "timeout":  # the result was written; a rank then hung shutting down
            raw["note"] = f"killed after writing its result ({timeout_s} s limit)"
        raw["samples_per_s_summary"] = summarise(raw["samples_per_s"], 1)
        raw["cpu_us_per_sample_summary"] = summarise(raw["cpu_us_per_sample"], 1)
        results["runs"].append(raw)
    results["ratios"] = ratios(results["runs"])
    results["scaling"] = scaling(results["runs"])
    return results


def medians(runs: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    return {
        (r["system"], r["world_size"]): r["samples_per_s_summary"]["median"]
        for r in runs
        if "samples_per_s_summary" in r
    }


def scaling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system: samples/s at 2 processes over 1 (speedup), and half of that (parallel
    efficiency: 1.0 = twice the samples on twice the cores)."""
    by = medians(runs)
    out: dict[str, Any] = {}
    for system in dict.fromkeys(s for s, _ in by):
        if (system, 1) in by and (system, 2) in by:
            speedup = by[(system, 2)] / by[(system, 1)]
            out[system] = {"speedup": round(speedup, 2), "efficiency": round(speedup / 2, 2)}
    return out


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = medians(runs)
    out: dict[str, Any] = {}
    for (system, ws), rate in by.items():
        ours = by.get(("dmmp", ws))
        if system != "dmmp" and ours:
            out[f"dmmp/{system}@{ws}"] = round(ours / rate, 2)
    for ws in {ws for _, ws in by}:
        others = [r for (s, w), r in by.items() if w == ws and s != "dmmp"]
        if others and ("dmmp", ws) in by:
            out[f"dmmp/best_other@{ws}"] = round(by[("dmmp", ws)] / max(others), 2)
    if ("dmmp", 1) in by and ("dmmp", 2) in by:
        out["dmmp_scaling_2_over_1"] = round(by[("dmmp", 2)] / by[("dmmp", 1)], 2)
    return out
