"""The last lines of `make demo`: where the results are and what they say, read back from the
files the stages wrote (the run's summary.json, the evaluation report, the export manifest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUMMARY_K = "50"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(x: object, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else "-"


def _teacher_line(report: dict[str, Any]) -> str:
    teacher, bayes = report.get("teacher", {}), report.get("bayes") or {}
    parts = []
    for task in ("ctr", "cvr", "ctcvr"):
        auc = _f(teacher.get(task, {}).get("auc"))
        ceiling = bayes.get(task, {}).get("auc")
        parts.append(f"{task.upper()} {auc}" + (f" ({_f(ceiling)})" if ceiling else ""))
    head = "teacher AUC (Bayes ceiling)" if bayes else "teacher AUC"
    return f"{head}: " + ", ".join(parts)


def _retrieval_lines(report: dict[str, Any]) -> list[str]:
    r = report.get("retrieval")
    if not r:
        return []
    k = SUMMARY_K if SUMMARY_K in map(str, r.get("k", [])) else str(r["k"][len(r["k"]) // 2])
    lines = []
    sample = r.get("sample")
    if sample:
        lines.append(
            f"retrieval @{k}, {r.get('oracle_sample_users')} test users: expected conversions "
            f"{_f(sample['exp_conversions_ratio'].get(k))} and expected clicks "
            f"{_f(sample['exp_clicks_ratio'].get(k))} of the oracle's, click-bait share "
            f"{_f(sample['bait_share'].get(k))}"
        )
    everyone = r.get("all_users", {})
    if everyone:
        lines.append(
            f"retrieval @{k}, all {r.get('users')} test users: click recall "
            f"{_f(everyone['recall_click'].get(k))}, conversion recall "
            f"{_f(everyone['recall_conversion'].get(k))}; mean gate click / conversion "
            f"{_f(r['mean_gate'][0], 2)} / {_f(r['mean_gate'][1], 2)}"
        )
    return lines


def summary_lines(
    run: Path, report_path: Path, export: Path, stages: list[tuple[str, float]]
) -> list[str]:
    """About ten lines: model, report, export, teacher AUCs, retrieval figures, stage times."""
    lines = ["", "== summary"]
    train = _read(run / "summary.json") or {}
    rate = train.get("samples_per_s")
    lines.append(
        f"model:  {train.get('checkpoint', run / 'checkpoints')} ({train.get('steps')} steps on "
        f"{train.get('world_size')} processes"
        + (f", {rate:,.0f} samples/s" if rate else "")
        + f"; TensorBoard logs in {run / 'tensorboard'})"
    )
    report = _read(report_path)
    lines.append(f"report: {report_path}" if report else f"report: none ({report_path} missing)")
    manifest = _read(export / "manifest.json")
    if manifest:
        lines.append(
            f"export: {export} (user side, {manifest.get('num_items')} item vectors, exact and "
            f"HNSW indexes); try: dmmp-rec retrieve --export {export} --demo-users 3"
        )
    else:
        lines.append(f"export: none ({export} missing)")
    if report:
        lines.append(_teacher_line(report))
        lines += _retrieval_lines(report)
    total = sum(seconds for _, seconds in stages)
    times = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages)
    lines.append(f"time: {times}; total {total:.0f} s")
    return lines
