"""`make gpu-check` (scripts/gpu_check.py) without a GPU: what it would run on 8 GPUs (dry run),
its whole orchestration on 2 CPU ranks (--cpu-smoke: torchx job, killed rank and elastic
resume, eval compared with a one-process CPU eval, export, retrieve, benchmarks), and that it
can fail: a failing step, a NaN injected into training, a step past its deadline, a metric that
differs between the two evaluations.

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
STEPS = ["stack", "world", "plan", "train", "elastic", "eval", "eval_cpu", "export", "retrieve",
         "bench_train", "bench_latency"]  # fmt: skip
sys.path.insert(0, str(REPO / "scripts"))


def _check(out: Path, *args: str, timeout: int = 120) -> tuple[int, dict]:
    proc = subprocess.run(  # from another directory: paths come from the script's location
        [sys.executable, SCRIPT, "--out", str(out), *args],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = json.loads((out / "gpu_check.json").read_text())
    return proc.returncode, report


def test_gpu_check_dry_run_lists_every_gpu_step(tmp_path: Path) -> None:
    code, report = _check(tmp_path / "out", "--dry-run", "--gpus", "8")
    assert code == 0 and report["mode"] == "dry-run" and report["gpus"] == 8
    results = report["results"]
    assert list(results) == STEPS and {r["status"] for r in results.values()} == {"listed"}
    plan = results["plan"]["commands"][0]
    assert "--world-size 8 --local-world-size 8 --device cuda" in plan
    train = results["train"]["commands"][0]
    assert train.startswith("torchx run -s local_cwd launchers/dmmp.py:train --nproc_per_node 8")
    assert "--gpu 8" in train and "train.device=cuda" in train and "train.max_steps=200" in train
    assert "train.log_every=10" in train  # 20 logged steps, each checked for a finite loss
    elastic = results["elastic"]["commands"][0]
    assert "--max_restarts 2" in elastic and "train.fault_at_step=150" in elastic
    assert "train.checkpoint_every=100" in elastic
    assert "--nproc_per_node 8" in results["eval"]["commands"][0]
    cpu_eval = results["eval_cpu"]["commands"][0]
    assert "torch.distributed.run" not in cpu_eval and "train.device=cpu" in cpu_eval
    assert f"--checkpoint {tmp_path / 'out' / 'run'}" in cpu_eval
    assert "--nproc_per_node 8" in results["bench_train"]["commands"][0]
    assert "export --checkpoint" in results["export"]["commands"][0]


def test_gpu_check_failure_fails_the_check_and_skips_what_depends_on_it(tmp_path: Path) -> None:
    code, report = _check(tmp_path / "out", "--cpu-smoke", "--set", "synthetic.num_users=-1")
    assert code == 1 and report["passed"] is False
    results = report["results"]
    assert results["stack"]["status"] == "ok"  # the CPU stack of this machine
    assert results["world"]["status"] == "failed" and "num_users" in results["world"]["error"]
    for step in ("plan", "train", "elastic", "eval", "eval_cpu", "export", "retrieve"):
        assert results[step]["status"] == "skipped", step


def test_a_step_past_its_deadline_is_killed_and_fails(tmp_path: Path) -> None:
    code, report = _check(tmp_path / "out", "--cpu-smoke", "--only", "world", "--step-timeout", "1")
    assert code == 1 and list(report["results"]) == ["world"]
    world = report["results"]["world"]
    assert world["status"] == "failed" and "timed out after 1 s" in world["error"]
    assert world["seconds"] < 10  # killed, not waited for
    assert not (tmp_path / "out" / "world" / "world.json").exists()


def test_evaluations_are_compared_within_the_stated_tolerances() -> None:
    from gpu_checks.evaluation import IMPRESSION_TOL, RETRIEVAL_TOL, report_differences

    cpu = {
        "teacher": {"ctr": {"auc": 0.71, "rows": 1000}},
        "retrieval": {"recall": {"50": 0.40}, "users": 300},
        "meta": {"world_size": 1},
    }
    near = {
        "teacher": {"ctr": {"auc": 0.71 + IMPRESSION_TOL / 2, "rows": 1000}},
        "retrieval": {"recall": {"50": 0.40 + RETRIEVAL_TOL / 2}, "users": 300},
        "meta": {"world_size": 8},  # meta is not a metric
    }
    assert report_differences(near, cpu) == ([], 4)
    far = json.loads(json.dumps(near))
    far["teacher"]["ctr"]["auc"] = 0.71 + 3 * IMPRESSION_TOL
    far["retrieval"]["users"] = 299
    problems, _ = report_differences(far, cpu)
    assert [p.split(":")[0] for p in problems] == ["teacher.ctr.auc", "retrieval.users"]


@pytest.mark.slow
def test_gpu_check_fails_on_a_nan_loss(tmp_path: Path) -> None:
    code, report = _check(
        tmp_path / "out",
        "--cpu-smoke",
        "--steps",
        "6",
        "--inject-nan-at-step",
        "3",
        "--only",
        "train",
        timeout=600,
    )
    results = report["results"]
    assert code == 1 and list(results) == ["world", "plan", "train"]
    assert results["plan"]["status"] == "ok"
    error = results["train"]["error"]
    assert results["train"]["status"] == "failed" and "non-finite loss" in error, error
    assert "non-finite loss at 3 of 6 logged steps, first at step 4" in error  # poisoned after 3


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step(tmp_path: Path) -> None:
    code, report = _check(tmp_path / "out", "--cpu-smoke", "--steps", "10", timeout=900)
    results = report["results"]
    failed = {k: v.get("error") for k, v in results.items() if v["status"] != "ok"}
    assert code == 0 and failed == {} and report["mode"] == "cpu-smoke"
    assert results["stack"]["installed"]["fbgemm-gpu-cpu"] == "1.8.0"
    assert results["plan"]["world_size"] == 2
    train = results["train"]
    assert train["world_size"] == 2 and train["samples_per_s"] > 0
    assert (train["device"], train["backend"], train["logged_steps_finite"]) == ("cpu", "gloo", 10)
    assert results["elastic"] == results["elastic"] | {
        "killed_after_step": 7,
        "resumed_from_step": 5,
    }
    assert all(0 < auc < 1 for auc in results["eval"]["teacher_auc"].values())
    assert results["eval_cpu"]["metrics_compared"] > 20
    assert results["export"]["items"] == 3000 and results["export"]["train_step"] == 10
    assert results["retrieve"]["users"] == 5
    assert results["bench_train"]["median"] > 0
    assert results["bench_latency"]["search/1"]["p50_ms"] > 0
    assert results["bench_latency"]["user_side/1024"]["n"] == 10
    assert (tmp_path / "out" / "run_fault" / "summary.json").is_file()
