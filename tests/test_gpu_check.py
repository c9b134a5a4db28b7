"""`make gpu-check` (scripts/gpu_check.py) without a GPU: what it would run on 8 GPUs (dry run),
its whole orchestration on 2 CPU ranks (--cpu-smoke: torchx job, killed rank and elastic
resume, eval, export, retrieve, benchmarks), and a failing step failing the check.

The GPU figures themselves can only come from a CUDA machine; none of these tests claims them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

SCRIPT = str(REPO / "scripts" / "gpu_check.py")
STEPS = ["stack", "world", "plan", "train", "elastic", "eval", "export", "retrieve",
         "bench_train", "bench_latency"]  # fmt: skip


def _check(out: Path, *args: str, timeout: int = 120) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = json.loads((out / "gpu_check.json").read_text())
    return proc.returncode, report


def test_gpu_check_dry_run_lists_every_gpu_step(tmp_path: Path) -> None:
    code, report = _check(tmp_path, "--dry-run", "--gpus", "8")
    assert code == 0 and report["mode"] == "dry-run" and report["gpus"] == 8
    results = report["results"]
    assert list(results) == STEPS and {r["status"] for r in results.values()} == {"listed"}
    plan = results["plan"]["commands"][0]
    assert "--world-size 8 --local-world-size 8 --device cuda" in plan
    train = results["train"]["commands"][0]
    assert train.startswith("torchx run -s local_cwd launchers/dmmp.py:train --nproc_per_node 8")
    assert "--gpu 8" in train and "train.device=cuda" in train and "train.max_steps=200" in train
    elastic = results["elastic"]["commands"][0]
    assert "--max_restarts 2" in elastic and "train.fault_at_step=150" in elastic
    assert "train.checkpoint_every=100" in elastic
    assert "--nproc_per_node=8" in results["eval"]["commands"][0]
    assert "--nproc_per_node=8" in results["bench_train"]["commands"][0]
    assert "export --checkpoint" in results["export"]["commands"][0]


def test_gpu_check_failure_fails_the_check_and_skips_what_depends_on_it(tmp_path: Path) -> None:
    code, report = _check(tmp_path, "--cpu-smoke", "--set", "synthetic.num_users=-1")
    assert code == 1 and report["passed"] is False
    results = report["results"]
    assert results["stack"]["status"] == "ok"  # the CPU stack of this machine
    assert results["world"]["status"] == "failed" and "num_users" in results["world"]["error"]
    for step in ("plan", "train", "elastic", "eval", "export", "retrieve", "bench_train"):
        assert results[step]["status"] == "skipped", step


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step(tmp_path: Path) -> None:
    code, report = _check(tmp_path, "--cpu-smoke", "--steps", "10", timeout=900)
    results = report["results"]
    failed = {k: v.get("error") for k, v in results.items() if v["status"] != "ok"}
    assert code == 0 and failed == {} and report["mode"] == "cpu-smoke"
    assert results["stack"]["installed"]["fbgemm-gpu-cpu"] == "1.8.0"
    assert results["plan"]["world_size"] == 2
    assert results["train"]["world_size"] == 2 and results["train"]["samples_per_s"] > 0
    assert results["elastic"] == results["elastic"] | {
        "killed_after_step": 7,
        "resumed_from_step": 5,
    }
    assert all(0 < auc < 1 for auc in results["eval"]["teacher_auc"].values())
    assert results["export"]["items"] == 3000 and results["export"]["train_step"] == 10
    assert results["retrieve"]["users"] == 5
    assert results["bench_train"]["median"] > 0
    assert results["bench_latency"]["user/1"]["p50_ms"] > 0
    assert (tmp_path / "run_fault" / "summary.json").is_file()
