"""Train and evaluate every model of the comparison with one budget, then write the report.

Our models: the config with the model's overrides, trained by `dmmp_rec.train.trainer.train`
into `<out>/runs/<name>` and evaluated by `dmmp_rec.eval.report.evaluate` (in this process, or
with `nproc > 1` as `torchrun` jobs of `dmmp-rec train` / `dmmp-rec eval`). The torch-rechub
peers: the same rows, steps, global batch and seed in this process (rechub_train, rechub_eval).
A run directory is cleared before its model trains, so a report never mixes runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dmmp_rec.compare.flatten import bayes_metrics, model_metrics, reference_rows
from dmmp_rec.compare.models import ModelSpec, select_models
from dmmp_rec.compare.plot import plot_tradeoff
from dmmp_rec.compare.rechub_models import uniform_dim
from dmmp_rec.compare.table import PEER_NOTES, comparison_markdown
from dmmp_rec.compare.targets import check_targets
from dmmp_rec.config import DmmpConfig, config_from_dict, to_dict
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.eval.report import EvalOptions, write_report
from dmmp_rec.eval.retrieval_eval import RetrievalOptions

KS = [10, 50, 100]
REPORT_MD, REPORT_JSON, REPORT_PNG = "comparison.md", "comparison.json", "comparison.png"


@dataclass
class CompareOptions:
    out: Path
    steps: int | None = None  # None: the config's train.max_steps
    nproc: int = 1  # training / evaluation processes for our models (torchrun when > 1)
    models: list[str] = field(default_factory=list)  # empty: all
    oracle_users: int = 2000
    progress: bool = True
    command: str = "dmmp-rec compare"


def model_config(cfg: DmmpConfig, spec: ModelSpec, steps: int, run_dir: Path) -> DmmpConfig:
    """The config of one of our models: `cfg` with the model's overrides and the budget."""
    overrides = [*spec.overrides, f"train.max_steps={steps}", f"train.out={run_dir}"]
    return config_from_dict(to_dict(cfg), overrides, source=f"{cfg.source} [{spec.name}]")


def _retrieval_options(cfg: DmmpConfig, opts: CompareOptions) -> RetrievalOptions:
    return RetrievalOptions(ks=list(KS), oracle_users=opts.oracle_users, seed=cfg.seed)


def _torchrun(nproc: int, argv: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    cmd += ["-m", "dmmp_rec.cli", *argv]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _run_ours(
    spec: ModelSpec, cfg: DmmpConfig, run_dir: Path, env: DistEnv, opts: CompareOptions
) -> tuple[dict, dict, float]:
    """(train summary, eval report, eval seconds) of one of our models."""
    eval_path = run_dir / "eval.json"
    if opts.nproc > 1:
        config_file = run_dir / "config.yaml"
        config_file.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        _torchrun(opts.nproc, ["train", "--config", str(config_file)])
        t0 = time.perf_counter()
        eval_argv = ["eval", "--config", str(config_file), "--checkpoint", str(run_dir)]
        eval_argv += ["--out", str(eval_path), "--oracle-users", str(opts.oracle_users)]
        _torchrun(opts.nproc, [*eval_argv, *([] if opts.progress else ["--quiet"])])
        seconds = time.perf_counter() - t0
        summary = json.loads((run_dir / "summary.json").read_text())
        return summary, json.loads(eval_path.read_text()), seconds
    from dmmp_rec.eval.report import evaluate
    from dmmp_rec.train.trainer import train

    summary = train(cfg, env)
    t0 = time.perf_counter()
    options = EvalOptions(_retrieval_options(cfg, opts), progress=opts.progress)
    report = evaluate(cfg, run_dir, env, options)
    seconds = time.perf_counter() - t0
    write_report(report, eval_path)
    return summary, report, seconds


def _run_peer(
    spec: ModelSpec, cfg: DmmpConfig, run_dir: Path, env: DistEnv, opts: CompareOptions, steps: int
) -> tuple[dict, dict, float]:
    from dmmp_rec.compare.rechub_eval import evaluate_peer
    from dmmp_rec.compare.rechub_train import train_rechub

    assert spec.rechub is not None
    batch = cfg.data.batch_size * opts.nproc  # our global batch
    peer, summary = train_rechub(spec.rechub, cfg, steps, batch, env.device, run_dir)
    t0 = time.perf_counter()
    report = evaluate_peer(peer, cfg, _retrieval_options(cfg, opts), env.device, opts.progress)
    seconds = time.perf_counter() - t0
    write_report(report, run_dir / "eval.json")
    return summary, report, seconds


def _setup_text(cfg: DmmpConfig, steps: int, opts: CompareOptions, reports: list[dict]) -> str:
    batch = cfg.data.batch_size * opts.nproc
    text = (
        f"Data: `{cfg.data.path}` (config `{cfg.source}`, seed {cfg.seed}). Every model: "
        f"{steps} steps x {batch} samples = {steps * batch:,} training samples, the same "
        f"seeded row order; ours on {opts.nproc} process(es). All numbers are on held-out data: "
        "the test split (the last day), never seen in training."
    )
    teacher = next((r["teacher"] for r in reports if "teacher" in r), None)
    if teacher:
        text += (
            f" Impression metrics: {teacher['rows']:,} test rows ({teacher['clicks']:,} clicks, "
            f"{teacher['conversions']:,} conversions); CVR AUC on clicked rows only."
        )
    retrieval = next((r["retrieval"] for r in reports if "retrieval" in r), None)
    if retrieval:
        text += (
            f" Retrieval: exact FAISS top-K over all {retrieval['items']:,} items for "
            f"{retrieval['users']:,} test users; recall averages over the "
            f"{retrieval['users_with_clicks']:,} users with a test click "
            f"({retrieval['users_with_conversions']:,} with a conversion); NDCG (gains = true "
            f"pCTCVR), bait share and expected conversions over the oracle's on a seeded "
            f"sample of {retrieval['oracle_sample_users']:,} of them."
        )
    return text


def _json_safe(obj: Any) -> Any:
    """NaN / inf as null (strict JSON), numpy scalars as floats."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    value = float(obj)
    return value if math.isfinite(value) else None


def _raw(report: dict) -> dict:
    """The evaluation report's raw numbers, without the repeated config values."""
    meta = {k: v for k, v in report.get("meta", {}).items() if k != "config_values"}
    return _json_safe({**report, **({"meta": meta} if meta else {})})


def _check_finite(result: dict[str, Any]) -> None:
    """NaN/inf never reaches the report silently: comparison.json holds null instead."""
    for model in result["models"].values():
        for k, v in model["metrics"].items():
            if v is not None and not math.isfinite(v):
                model["metrics"][k] = None


def run_comparison(cfg: DmmpConfig, env: DistEnv, opts: CompareOptions) -> dict[str, Any]:
    """Train and evaluate the selected models; write comparison.md / .json / .png under
    `opts.out`; return the result dict (what comparison.json holds)."""
    specs = select_models(opts.models)
    steps = opts.steps or cfg.train.max_steps
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict[str, Any]] = {}
    reports: dict[str, dict] = {}
    t_all = time.perf_counter()
    for n, spec in enumerate(specs, 1):
        run_dir = out / "runs" / spec.name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        print(f"\n== [{n}/{len(specs)}] {spec.label}: {steps} steps -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        if spec.family == "dmmp_rec":
            run_cfg = model_config(cfg, spec, steps, run_dir)
            summary, report, eval_s = _run_ours(spec, run_cfg, run_dir, env, opts)
        else:
            summary, report, eval_s = _run_peer(spec, cfg, run_dir, env, opts, steps)
        reports[spec.name] = report
        models[spec.name] = {
            "label": spec.label,
            "short": spec.short,
            "family": spec.family,
            "overrides": list(spec.overrides),
            "metrics": model_metrics(report),
            "train": {
                k: summary.get(k)
                for k in ("steps", "samples_trained", "seconds", "samples_per_s", "validation")
            },
            "eval_seconds": round(eval_s, 1),
            "eval": _raw(report),
        }
        print(
            f"== {spec.label}: done in {time.perf_counter() - t0:.1f} s "
            f"(train {summary.get('seconds')} s, eval {eval_s:.1f} s)",
            flush=True,
        )
    ordered = [reports[s.name] for s in specs]
    bayes = next((bayes_metrics(r) for r in ordered if "bayes" in r), bayes_metrics({}))
    references = next((reference_rows(r) for r in ordered if "references" in r), {})
    rows = {name: m["metrics"] for name, m in models.items()}
    result: dict[str, Any] = {
        "command": opts.command,
        "setup": _setup_text(cfg, steps, opts, ordered),
        "config": cfg.source,
        "seed": cfg.seed,
        "steps": steps,
        "global_batch": cfg.data.batch_size * opts.nproc,
        "nproc": opts.nproc,
        "models": models,
        "bayes": bayes,
        "references": references,
        "targets": [t.to_dict() for t in check_targets(rows, bayes)],
        "notes": [
            PEER_NOTES.format(dim=uniform_dim(cfg)),
            "Teacher columns of our student baselines (two-tower, no distillation, no gate) are "
            "their own CGC/PLE teachers, trained beside each student on the shared embeddings.",
            "torch-rechub 0.9.0's DSSM ignores its `temperature` in forward (commented out), so "
            "its point-wise scores are sigmoid(cosine) in [0.27, 0.73]; that limits how well it "
            "learns to retrieve in this budget.",
            "Reference rankers need no model; the oracles' recalls are on the oracle sample.",
            "docs/comparison.md discusses the targets that are missed and why.",
        ],
        "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    _check_finite(result)
    write_reports(result, out)
    return result


def write_reports(result: dict[str, Any], out: str | Path) -> None:
    """comparison.json, comparison.md and comparison.png from a result dict."""
    out = Path(out)
    (out / REPORT_JSON).write_text(json.dumps(result, indent=1) + "\n")
    (out / REPORT_MD).write_text(comparison_markdown(result))
    plot_tradeoff(result, out / REPORT_PNG)
    print(f"\nwrote {out / REPORT_MD}, {out / REPORT_JSON}, {out / REPORT_PNG}", flush=True)
