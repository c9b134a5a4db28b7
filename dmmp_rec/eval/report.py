"""`evaluate(cfg, checkpoint, env)`: the whole evaluation of a trained checkpoint as one
`EvalReport`, its JSON file and its readable table.

Sections: `teacher` (and `student_impressions`) on the labelled split, `bayes` (the same metrics
with the true probabilities, synthetic world only), `retrieval` (the student through FAISS),
`references` (rankers that need no model) and `meta`. Every rank returns the same report.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import torch

from dmmp_rec.config import DmmpConfig, to_dict
from dmmp_rec.console.progress import track
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.data.synthetic.world import GROUND_TRUTH_FILE, GroundTruth
from dmmp_rec.distributed.collectives import on_main
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.distributed.runtime import checkpoint_dir, load_for_inference
from dmmp_rec.eval.records import JsonObject
from dmmp_rec.eval.report_types import EvalMeta, EvalReport, ImpressionMetrics
from dmmp_rec.eval.retrieval_eval import RetrievalOptions, evaluate_retrieval
from dmmp_rec.eval.teacher_eval import bayes_metrics, student_metrics, teacher_metrics
from dmmp_rec.inference.catalogue_vectors import RetrievalModel
from dmmp_rec.inference.split_scores import score_rows
from dmmp_rec.metrics import impression_aucs


@dataclass
class EvalOptions:
    """What `dmmp-rec eval` measures beyond the config (its command-line options)."""

    retrieval: RetrievalOptions = field(default_factory=RetrievalOptions)
    progress: bool = True


def load_truth(cfg: DmmpConfig) -> GroundTruth | None:
    """The synthetic world's ground truth, or None for data without one (Ali-CCP)."""
    path = Path(cfg.data.path)
    return GroundTruth.load(path) if (path / GROUND_TRUTH_FILE).exists() else None


def impression_metrics(
    rows: dict[str, np.ndarray], truth: GroundTruth | None
) -> tuple[ImpressionMetrics, dict[str, float], ImpressionMetrics | None]:
    """(teacher, student, Bayes-ceiling) metrics of every scored impression; the AUCs of the
    model are computed once (metrics.impression_aucs, as training's validation does)."""
    aucs = impression_aucs(rows)
    bayes = ImpressionMetrics.from_dict(bayes_metrics(rows, truth)) if truth is not None else None
    teacher = ImpressionMetrics.from_dict(teacher_metrics(rows, aucs))
    return teacher, student_metrics(rows, aucs), bayes


def evaluate_model(
    dmp: torch.nn.Module,
    cfg: DmmpConfig,
    env: DistEnv,
    options: EvalOptions | None = None,
) -> EvalReport:
    """Evaluate a loaded model: `dmp` is a DistributedModelParallel in eval mode (its `module`
    is the DMMPModel) or a plain DMMPModel. Every rank must call this together."""
    options = options or EvalOptions()
    truth = load_truth(cfg)
    split = options.retrieval.split
    show = options.progress and env.is_main
    timings = {}
    t0 = time.perf_counter()
    loader = loader_for_split(cfg, split, env.rank, env.world_size, drop_last=False)
    batches = track(loader, f"scoring {split}", "batch", enabled=show)
    # rank 0 computes the impression metrics from every rank's rows and sends them round
    teacher, student, bayes = on_main(
        score_rows(dmp, batches, cfg.features, env.device), partial(impression_metrics, truth=truth)
    )
    timings["impressions_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module = cast(RetrievalModel, getattr(dmp, "module", dmp))
    retrieval = evaluate_retrieval(
        module, cfg, truth, options.retrieval, env.device, options.progress
    )
    timings["retrieval_s"] = time.perf_counter() - t0
    meta = EvalMeta(
        config=cfg.source,
        data=cfg.data.path,
        split=split,
        variant=cfg.model.variant,
        teacher_kind=cfg.model.teacher.kind,
        world_size=env.world_size,
        ground_truth=truth is not None,
        options=asdict(options.retrieval),
        timings_s={k: round(v, 2) for k, v in timings.items()},
    )
    return EvalReport(teacher, student, bayes, retrieval, meta)


def evaluate(
    cfg: DmmpConfig,
    checkpoint: str | Path,
    env: DistEnv,
    options: EvalOptions | None = None,
) -> EvalReport:
    """Load `checkpoint` (a run dir, its checkpoints/ dir or a step dir) sharded for this job and
    evaluate it; the report dict, the same on every rank."""
    t0 = time.perf_counter()
    step_dir = checkpoint_dir(checkpoint)
    dmp = load_for_inference(cfg, env, step_dir)
    load_s = time.perf_counter() - t0
    report = evaluate_model(dmp, cfg, env, options)
    report.our_meta.checkpoint = str(step_dir)
    report.our_meta.timings_s["load_s"] = round(load_s, 2)
    report.our_meta.config_values = to_dict(cfg)
    return report


def evaluate_splits(
    cfg: DmmpConfig,
    checkpoint: str | Path,
    env: DistEnv,
    splits: list[str],
    options: EvalOptions | None = None,
    teacher_on: tuple[str, ...] = ("test",),
) -> dict[str, EvalReport]:
    """`evaluate` on each of `splits` with the model loaded once: {split: report}. Choices are
    made on "val"; "test" is for the final table only. The (slow) teacher retrieval of
    `options.retrieval.teacher_users` runs on the `teacher_on` splits only."""
    options = options or EvalOptions()
    step_dir = checkpoint_dir(checkpoint)
    dmp = load_for_inference(cfg, env, step_dir)
    reports = {}
    for split in splits:
        teacher_users = options.retrieval.teacher_users if split in teacher_on else 0
        retrieval = replace(options.retrieval, split=split, teacher_users=teacher_users)
        opts = replace(options, retrieval=retrieval)
        report = evaluate_model(dmp, cfg, env, opts)
        report.our_meta.checkpoint = str(step_dir)
        report.our_meta.config_values = to_dict(cfg)
        reports[split] = report
    return reports


def write_report(report: EvalReport | JsonObject, path: str | Path) -> Path:
    """JSON with NaN written as null (strict JSON readers reject NaN); a plain dict is a peer
    model's report (dmmp_rec/compare)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = report.to_dict() if isinstance(report, EvalReport) else report
    path.write_text(json.dumps(_nan_to_none(raw), indent=1) + "\n")
    return path


def _nan_to_none(obj: object) -> object:
    """Strict JSON: NaN as null, +-inf (the serving knob's ends) as the strings "inf"/"-inf",
    which float() reads back."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# The readable table


def _f(x: object, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _probability_table(report: dict) -> list[str]:
    teacher, bayes = report["teacher"], report.get("bayes")
    lines = [
        f"Impressions ({report['meta']['split']}): {teacher['rows']} rows, "
        f"{teacher['clicks']} clicks, {teacher['conversions']} conversions",
        f"  {'task':<6} {'AUC':>7} {'Bayes':>7} {'logloss':>8} {'Bayes':>8} "
        f"{'pred':>8} {'obs':>8} {'calib':>6}",
    ]
    for task, rows in (("ctr", "all"), ("cvr", "clicked"), ("ctcvr", "all")):
        t = teacher[task]
        b = bayes[task] if bayes else {}
        lines.append(
            f"  {task:<6} {_f(t['auc']):>7} {_f(b.get('auc')):>7} {_f(t['log_loss']):>8} "
            f"{_f(b.get('log_loss')):>8} {_f(t['predicted_rate'], 5):>8} "
            f"{_f(t['observed_rate'], 5):>8} {_f(t['calibration'], 3):>6}  ({rows} rows)"
        )
    student = report.get("student_impressions", {})
    if student:
        lines.append(
            "  student impression AUCs: " + ", ".join(f"{k} {_f(v)}" for k, v in student.items())
        )
    return lines


def _ranker_lines(name: str, scopes: dict, ks: list[int]) -> list[str]:
    lines = []
    for scope, metrics in scopes.items():
        for metric, by_k in metrics.items():
            values = " ".join(f"{_f(by_k.get(str(k))):>7}" for k in ks)
            lines.append(f"  {name:<14} {scope:<10} {metric:<22} {values}")
    return lines


def _frontier_lines(frontier: dict | None, k: int = 50) -> list[str]:
    """The serving knob's frontier at K = k (where K is evaluated), one line per beta."""
    if not frontier or str(k) not in frontier["points"][0]["exp_clicks_ratio"]:
        return []
    lines = [
        "",
        f"Frontier over the serving knob beta (g' = softmax(gate_logits + [0, beta])), @{k}, "
        "over the oracle's, and as totals over the sample's users:",
        f"  {'beta':>6} {'gate conv':>9} {'exp clicks':>10} {'exp conv':>9} {'bait':>6} "
        f"{'tot clicks':>10} {'tot conv':>9}",
    ]
    for p in frontier["points"]:
        totals = [p.get(m, {}).get(str(k)) for m in ("exp_clicks_total", "exp_conversions_total")]
        lines.append(
            f"  {float(p['beta']):>6g} {_f(p['mean_gate_conversion'], 3):>9} "
            f"{_f(p['exp_clicks_ratio'][str(k)]):>10} {_f(p['exp_conversions_ratio'][str(k)]):>9}"
            f" {_f(p['bait_share'][str(k)], 3):>6} {_f(totals[0], 1):>10} {_f(totals[1], 2):>9}"
        )
    return lines


def _oracle_gate_lines(bound: dict | None) -> list[str]:
    """The oracle-gate bound (eval.oracle_gate) in one line per metric."""
    if not bound:
        return []
    lines = ["", f"Oracle-gate bound @{bound['k']} (gains over one global knob on a flat gate):"]
    for metric in ("platform_total", "per_user_mean"):
        b = bound[metric]
        rates = ", ".join(f"{r['rate']:g}" for r in b["rates"])
        lines.append(
            f"  {metric}: each user's own beta {b['oracle_gain']:+.2%}, the learned gate "
            f"{b['learned_gain']:+.2%}, captured {_f(b['captured'], 3)} (mean over rates {rates})"
        )
    return lines


def format_report(typed: EvalReport | JsonObject) -> str:
    """The report as a plain-text table for the terminal."""
    report = typed.to_dict() if isinstance(typed, EvalReport) else typed
    r = report["retrieval"]
    ks = r["k"]
    lines = _probability_table(report)
    lines += [
        "",
        f"Retrieval ({r['index']}): {r['users']} users ({r['users_with_clicks']} with clicks, "
        f"{r['users_with_conversions']} with conversions; recall averages over those), "
        f"{r['items']} items from {r['catalogue']}",
        f"  oracle metrics on a sample of {r['oracle_sample_users']} users "
        f"(seed {r['oracle_sample_seed']}); mean gate (click, conversion) "
        f"{_f(r['mean_gate'][0], 3)}, {_f(r['mean_gate'][1], 3)}",
        f"  {'ranker':<14} {'users':<10} {'metric':<22} "
        + " ".join(f"{'@' + str(k):>7}" for k in ks),
    ]
    scopes = {k: v for k, v in r.items() if k in ("all_users", "sample")}
    lines += _ranker_lines("model", scopes, ks)
    for name, ref in report.get("references", {}).items():
        lines += _ranker_lines(name, ref, ks)
    lines += _frontier_lines(report.get("frontier"))
    lines += _oracle_gate_lines(report.get("oracle_gate"))
    tr = report.get("teacher_retrieval")
    if tr:
        k = "50" if "50" in tr["student_best"] else next(iter(tr["student_best"]))
        lines += [
            "",
            f"Teacher as a full-catalogue retriever ({tr['users']} users of the sample), "
            f"expected conversions@{k} / oracle: teacher pCTCVR "
            f"{_f(tr['teacher']['exp_conversions_ratio'][k])}, student as trained "
            f"{_f(tr['student']['exp_conversions_ratio'][k])}, student's best beta "
            f"({tr['student_best_beta'][k]:g}) {_f(tr['student_best'][k])}",
        ]
    t = report["meta"].get("timings_s", {})
    lines += ["", "timings (s): " + ", ".join(f"{k} {v}" for k, v in t.items())]
    return "\n".join(lines)
