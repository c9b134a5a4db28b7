"""The evaluation steps: `dmmp-rec eval` of the GPU-trained checkpoint on the GPUs, then the same
checkpoint evaluated in one CPU process, and the two reports compared metric by metric.

GPU and CPU compute the same functions in another summation order (cuBLAS, fbgemm's CUDA
kernels, NCCL) and the evaluation itself runs fp32 (no TF32: only training enables it), so a
score differs by ~1e-6 relative. A metric moves only where that reorders near-tied scores:
- AUC, log loss and the other impression metrics (`teacher`, `student_impressions`):
  |gpu - cpu| <= IMPRESSION_TOL (1e-3);
- retrieval metrics (means over users of top-K sets; an item at the K boundary can swap):
  |gpu - cpu| <= RETRIEVAL_TOL * max(1, |cpu|) (0.01);
- counts (rows, users, items) must be equal.
A wrong kernel, a lost shard or a row scored twice moves them far more than that.
"""

from __future__ import annotations

import math
from typing import Any

from dmmp_rec.distributed.launch import CLI_MODULE, torchrun_command
from gpu_checks.core import CONFIG, Check, CheckFailed, cli, read_json

IMPRESSION_TOL = 1e-3
RETRIEVAL_TOL = 1e-2
COMPARED = ("teacher", "student_impressions", "bayes", "retrieval", "references", "frontier")


def _eval_argv(check: Check, report: str) -> list[str]:
    argv = ["eval", "--config", CONFIG, "--quiet", "--checkpoint", str(check.out / "run")]
    return argv + ["--out", report, "--oracle-users", "500"]


def step_eval(check: Check) -> dict[str, Any]:
    report = check.out / "eval.json"
    argv = torchrun_command(check.gpus, [*CLI_MODULE, *_eval_argv(check, str(report))])
    check.run("eval", argv + check.job(f"sharding.plan={check.out / 'plan.json'}"))
    if check.dry_run:
        return {}
    data = read_json(report)
    retrieval = {k: v for k, v in data["retrieval"].items() if isinstance(v, float | dict)}
    teacher = {task: data["teacher"][task]["auc"] for task in ("ctr", "cvr", "ctcvr")}
    return {"teacher_auc": teacher, "retrieval": retrieval, "world_size": check.gpus}


def flatten(tree: Any, prefix: str = "") -> dict[str, float | int]:
    """Numeric leaves of a report section as {dotted.key: value} (bools and strings left out)."""
    if isinstance(tree, dict):
        out: dict[str, float | int] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(tree, list):
        return {k: v for i, x in enumerate(tree) for k, v in flatten(x, f"{prefix}.{i}").items()}
    if isinstance(tree, int | float) and not isinstance(tree, bool):
        return {prefix: tree}
    return {}


def report_differences(gpu: dict[str, Any], cpu: dict[str, Any]) -> tuple[list[str], int]:
    """(what differs beyond the tolerances, as lines; how many metrics were compared)."""
    problems: list[str] = []
    compared = 0
    for section in COMPARED:
        a, b = flatten(gpu.get(section)), flatten(cpu.get(section))
        if a.keys() != b.keys():
            problems.append(f"{section}: keys differ: {sorted(a.keys() ^ b.keys())[:5]}")
            continue
        tol = IMPRESSION_TOL if section in ("teacher", "student_impressions", "bayes") else None
        for key in sorted(a):
            x, y = a[key], b[key]
            compared += 1
            if isinstance(x, int) and isinstance(y, int):
                ok = x == y
            elif math.isnan(x) or math.isnan(y):
                ok = math.isnan(x) and math.isnan(y)
            else:
                limit = tol if tol is not None else RETRIEVAL_TOL * max(1.0, abs(y))
                ok = abs(x - y) <= limit
            if not ok:
                problems.append(f"{section}.{key}: gpu {x!r} vs cpu {y!r}")
    return problems, compared


def step_eval_cpu(check: Check) -> dict[str, Any]:
    """The same checkpoint evaluated on the CPU, one process; every metric within tolerance."""
    report = check.out / "eval_cpu.json"
    argv = cli(*_eval_argv(check, str(report)))
    check.run("eval_cpu", argv + [*check.overrides, f"data.path={check.world}", "train.device=cpu"])
    if check.dry_run:
        return {}
    problems, compared = report_differences(read_json(check.out / "eval.json"), read_json(report))
    if problems:
        shown = "; ".join(problems[:8])
        raise CheckFailed(
            f"{len(problems)} of {compared} metrics differ between the {check.device} and the "
            f"CPU evaluation of the same checkpoint beyond the tolerances (impression "
            f"{IMPRESSION_TOL:g}, retrieval {RETRIEVAL_TOL:g} relative): {shown}"
        )
    return {
        "metrics_compared": compared,
        "impression_tol": IMPRESSION_TOL,
        "retrieval_tol": RETRIEVAL_TOL,
    }
