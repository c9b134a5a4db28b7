"""Train and evaluate every model of the comparison at N training seeds, then write the report.

Our models: the config with the model's overrides and `train.seed`, trained by
`dmmp_rec.train.trainer.train` into `<out>/runs/<model>/seed-<S>` and evaluated on each split
by `dmmp_rec.eval.report.evaluate_splits` (in this process, or with `nproc > 1` as `torchrun`
jobs of `dmmp-rec train` / `dmmp-rec eval`). The torch-rechub peers: the same rows, steps,
global batch and seeds in this process (rechub.train, rechub.eval). The world is fixed; the
seed moves initialisation and row order only, and the ground-truth user samples stay the same
(they follow the world's `seed`), so runs of two models at one seed are paired.

Splits: "val" is where choices are made (the operating point of the serving knob, and any
default a developer picks from these numbers); "test" is read once, for the final table. A run
directory is cleared before its model trains, unless `reuse` finds it finished.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dmmp_rec.compare import analysis
from dmmp_rec.compare.columns import COLUMNS
from dmmp_rec.compare.findings import Analysis
from dmmp_rec.compare.gate_analysis import gate_section
from dmmp_rec.compare.gate_table import gate_markdown
from dmmp_rec.compare.models import ModelSpec, select_models
from dmmp_rec.compare.notes import notes_for
from dmmp_rec.compare.plot import plot_frontiers
from dmmp_rec.compare.records import Comparison, ModelEntry, RunResult, json_safe
from dmmp_rec.compare.table import comparison_markdown
from dmmp_rec.compare.targets import check_targets
from dmmp_rec.config import DmmpConfig, config_from_dict, to_dict
from dmmp_rec.config.model import DISTILLING_VARIANTS
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.distributed.launch import CLI_MODULE, torchrun_command
from dmmp_rec.errors import InputError
from dmmp_rec.eval.records import JsonObject
from dmmp_rec.eval.report import EvalOptions, write_report
from dmmp_rec.eval.report_types import EvalReport
from dmmp_rec.eval.retrieval_eval import RetrievalOptions

KS = [10, 50, 100]
SPLITS = ("val", "test")
REPORT_MD, REPORT_JSON, REPORT_PNG = "comparison.md", "comparison.json", "comparison.png"


@dataclass
class CompareOptions:
    out: Path
    steps: int | None = None  # None: the config's train.max_steps
    nproc: int = 1  # training / evaluation processes for our models (torchrun when > 1)
    models: list[str] = field(default_factory=list)  # empty: all
    variants: list[str] = field(default_factory=list)  # "NAME=BASE key=value ..." (models.py)
    seeds: int = 1  # training seeds: the config's training seed and the next seeds - 1
    splits: tuple[str, ...] = SPLITS
    oracle_users: int = 2000
    teacher_users: int = 0  # users the teacher ranks the whole catalogue for (0: skip)
    reuse: bool = False  # keep finished runs found under `out` instead of retraining them
    progress: bool = True
    command: str = "dmmp-rec compare"

    def validate(self) -> None:
        if self.seeds < 1 or self.nproc < 1 or self.oracle_users < 0 or self.teacher_users < 0:
            raise InputError(
                "need --seeds >= 1, --nproc >= 1, --oracle-users >= 0 and --teacher-users >= 0"
            )
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise InputError(f"splits must be among {SPLITS}, got {list(self.splits)}")


def training_seeds(cfg: DmmpConfig, n: int) -> list[int]:
    return [cfg.training_seed + i for i in range(n)]


def model_config(
    cfg: DmmpConfig, spec: ModelSpec, steps: int, run_dir: Path, seed: int | None = None
) -> DmmpConfig:
    """The config of one of our models: `cfg` with the model's overrides, the budget and the
    training seed."""
    overrides = [*spec.overrides, f"train.max_steps={steps}", f"train.out={run_dir}"]
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    return config_from_dict(to_dict(cfg), overrides, source=f"{cfg.source} [{spec.name}]")


def _retrieval_options(cfg: DmmpConfig, opts: CompareOptions) -> RetrievalOptions:
    # the sample seed is the world's, not the training seed: every run sees the same users;
    # the teacher ranks the catalogue only for models whose student learns from it (the
    # "student within 5% of its teacher" target), and only on the test day
    distils = cfg.model.variant in DISTILLING_VARIANTS
    return RetrievalOptions(
        ks=list(KS),
        oracle_users=opts.oracle_users,
        seed=cfg.seed,
        teacher_users=opts.teacher_users if distils else 0,
    )


def _torchrun(nproc: int, argv: list[str]) -> None:
    """`dmmp-rec ARGV` on `nproc` local ranks, one intra-op thread each (as torchrun's default)."""
    cmd = torchrun_command(nproc, [*CLI_MODULE, *argv])
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _eval_path(run_dir: Path, split: str) -> Path:
    return run_dir / f"eval_{split}.json"


def _finished(run_dir: Path, splits: tuple[str, ...]) -> bool:
    files = [run_dir / "summary.json", *(_eval_path(run_dir, s) for s in splits)]
    return all(f.is_file() for f in files)


def _read_run(run_dir: Path, splits: tuple[str, ...], eval_s: float | None = None) -> RunResult:
    """A run's summary.json and reports from its directory (the reports parsed once into
    records); the eval seconds from the summary unless given."""
    summary = json.loads((run_dir / "summary.json").read_text())
    reports = {
        s: EvalReport.from_dict(json.loads(_eval_path(run_dir, s).read_text())) for s in splits
    }
    seconds = float(summary.get("eval_seconds", math.nan)) if eval_s is None else eval_s
    return RunResult(summary, reports, seconds)


def _run_ours(cfg: DmmpConfig, run_dir: Path, env: DistEnv, opts: CompareOptions) -> RunResult:
    """Train and evaluate one run of our models (as torchrun jobs when `opts.nproc > 1`)."""
    if opts.nproc > 1:
        config_file = run_dir / "config.yaml"
        config_file.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        _torchrun(opts.nproc, ["train", "--config", str(config_file)])
        t0 = time.perf_counter()
        for split in opts.splits:
            argv = ["eval", "--config", str(config_file), "--checkpoint", str(run_dir)]
            argv += ["--out", str(_eval_path(run_dir, split)), "--split", split]
            argv += ["--oracle-users", str(opts.oracle_users)]
            teacher = _retrieval_options(cfg, opts).teacher_users if split == "test" else 0
            argv += ["--teacher-users", str(teacher)]
            _torchrun(opts.nproc, [*argv, *([] if opts.progress else ["--quiet"])])
        return _read_run(run_dir, opts.splits, time.perf_counter() - t0)
    from dmmp_rec.eval.report import evaluate_splits
    from dmmp_rec.train.trainer import train

    summary = train(cfg, env)
    t0 = time.perf_counter()
    options = EvalOptions(_retrieval_options(cfg, opts), progress=opts.progress)
    reports = evaluate_splits(cfg, run_dir, env, list(opts.splits), options)
    seconds = time.perf_counter() - t0
    for split, report in reports.items():
        write_report(report, _eval_path(run_dir, split))
    return RunResult(summary, reports, seconds)


def _run_peer(
    spec: ModelSpec, cfg: DmmpConfig, run_dir: Path, env: DistEnv, opts: CompareOptions, steps: int
) -> RunResult:
    """Train and evaluate one run of a torch-rechub peer, in this process."""
    from dataclasses import replace

    from dmmp_rec.compare.rechub.eval import evaluate_peer
    from dmmp_rec.compare.rechub.train import train_rechub

    assert spec.rechub is not None
    batch = cfg.data.batch_size * opts.nproc  # our global batch
    peer, summary = train_rechub(spec.rechub, cfg, steps, batch, env.device, run_dir)
    t0 = time.perf_counter()
    reports = {}
    for split in opts.splits:
        options = replace(_retrieval_options(cfg, opts), split=split)
        raw = evaluate_peer(peer, cfg, options, env.device, opts.progress)
        write_report(raw, _eval_path(run_dir, split))
        reports[split] = EvalReport.from_dict(raw)
    return RunResult(summary, reports, time.perf_counter() - t0)


def _setup_text(cfg: DmmpConfig, steps: int, opts: CompareOptions, seeds: list[int]) -> str:
    batch = cfg.data.batch_size * opts.nproc
    return (
        f"Data: `{cfg.data.path}` (config `{cfg.source}`, world seed {cfg.seed}). Every model: "
        f"{steps} steps x {batch} samples = {steps * batch:,} training samples, at training "
        f"seeds {', '.join(map(str, seeds))} (initialisation and row order; the world and the "
        f"ground-truth user samples stay fixed, so runs at one seed are paired); ours on "
        f"{opts.nproc} process(es). Splits: {', '.join(opts.splits)} (each one day; choices "
        "are made on val, whose ground-truth sample shares no user with test's; the test day "
        "is read once, for the final table)."
    )


def analyse(result: Comparison) -> Analysis:
    """The summaries, frontier readings, operating points, targets and gate section of a
    comparison's runs."""
    splits = result.splits
    operating = None
    if {"val", "test"} <= set(splits):
        operating = {
            name: analysis.operating_points(result, name)
            for name in result.models
            if analysis.has_frontier(result, name)
        }
    return Analysis(
        summary={split: analysis.summary(result, split, COLUMNS) for split in splits},
        readings={split: analysis.frontier_readings(result, split) for split in splits},
        operating_points=operating,
        targets=check_targets(result) if "test" in splits else None,
        gate={split: gate_section(result, split) for split in splits},
    )


def _new_comparison(
    cfg: DmmpConfig, opts: CompareOptions, specs: list[ModelSpec], steps: int, seeds: list[int]
) -> Comparison:
    """The comparison's record before any run: the setup and an empty entry per model."""
    comparison = Comparison(
        command=opts.command,
        setup=_setup_text(cfg, steps, opts, seeds),
        config=cfg.source,
        world_seed=cfg.seed,
        seeds=seeds,
        splits=list(opts.splits),
        steps=steps,
        global_batch=cfg.data.batch_size * opts.nproc,
        nproc=opts.nproc,
        notes=notes_for(cfg, [s.name for s in specs]),
    )
    for spec in specs:
        entry = ModelEntry(spec.label, spec.short, spec.family, list(spec.overrides))
        comparison.models[spec.name] = entry
    return comparison


@dataclass
class _Job:
    """One run of the comparison: a model at a training seed, the n-th of `total`."""

    spec: ModelSpec
    seed: int
    n: int
    total: int


def _one_run(
    cfg: DmmpConfig, env: DistEnv, opts: CompareOptions, job: _Job, steps: int
) -> RunResult:
    """Train and evaluate one run into its directory (or reuse it when `opts.reuse` finds it
    finished), printing a line before and after."""
    spec, seed = job.spec, job.seed
    run_dir = Path(opts.out) / "runs" / spec.name / f"seed-{seed}"
    t0 = time.perf_counter()
    if opts.reuse and _finished(run_dir, opts.splits):
        run, how = _read_run(run_dir, opts.splits), "reused"
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        print(
            f"\n== [{job.n}/{job.total}] {spec.label}, seed {seed}: {steps} steps -> {run_dir}",
            flush=True,
        )
        if spec.family == "dmmp_rec":
            run = _run_ours(model_config(cfg, spec, steps, run_dir, seed), run_dir, env, opts)
        else:
            seeded = config_from_dict(to_dict(cfg), [f"train.seed={seed}"], source=cfg.source)
            run = _run_peer(spec, seeded, run_dir, env, opts, steps)
        run.summary["eval_seconds"] = round(run.eval_s, 1)
        (run_dir / "summary.json").write_text(json.dumps(run.summary, indent=1))
        how = "done"
    print(
        f"== {spec.label}, seed {seed}: {how} in {time.perf_counter() - t0:.1f} s "
        f"(train {run.summary.get('seconds')} s, eval {run.eval_s:.1f} s)",
        flush=True,
    )
    return run


def run_comparison(cfg: DmmpConfig, env: DistEnv, opts: CompareOptions) -> Analysis:
    """Train and evaluate the selected models at every seed; write comparison.md / .json /
    .png under `opts.out` (the JSON after every run, so a long comparison can be followed);
    return the analysis (the targets' verdicts are the command's last lines)."""
    opts.validate()
    specs = select_models(opts.models, opts.variants)
    steps = opts.steps or cfg.train.max_steps
    if steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    seeds = training_seeds(cfg, opts.seeds)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    comparison = _new_comparison(cfg, opts, specs, steps, seeds)
    t_all = time.perf_counter()
    pairs = [(spec, seed) for spec in specs for seed in seeds]
    for n, (spec, seed) in enumerate(pairs, start=1):
        run = _one_run(cfg, env, opts, _Job(spec, seed, n, len(pairs)), steps)
        comparison.add_run(spec.name, seed, run)
        progress = json.dumps(json_safe(comparison.to_dict()), indent=1)
        (out / REPORT_JSON).write_text(progress + "\n")
    comparison.total_seconds = round(time.perf_counter() - t_all, 1)
    comparison.complete = True
    found = analyse(comparison)
    write_reports(comparison, found, out)
    return found


def write_reports(comparison: Comparison, found: Analysis, out: str | Path) -> JsonObject:
    """comparison.json, comparison.md and comparison.png from the comparison's records and
    their analysis; returns what comparison.json holds."""
    out = Path(out)
    result: JsonObject = json_safe(comparison.to_dict() | found.to_dict())
    (out / REPORT_JSON).write_text(json.dumps(result, indent=1) + "\n")
    markdown = comparison_markdown(comparison, found, gate_markdown(comparison, found.gate))
    (out / REPORT_MD).write_text(markdown)
    plot_frontiers(comparison, out / REPORT_PNG)
    print(f"\nwrote {out / REPORT_MD}, {out / REPORT_JSON}, {out / REPORT_PNG}", flush=True)
    return result
