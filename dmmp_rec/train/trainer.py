"""The training job: build, shard, restore, train through TrainPipelineSparseDist, checkpoint.

The same function runs as one process or as one rank of a torchrun / torchx job. Every step
is collective, so every rank reads the same number of batches (the loader guarantees it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

from dmmp_rec.config import DmmpConfig, to_dict
from dmmp_rec.data.loader import ParquetBatchLoader, loader_for_split
from dmmp_rec.data.prefetch import training_batches
from dmmp_rec.distributed.checkpoint import CheckpointManager, list_checkpoints
from dmmp_rec.distributed.env import DistEnv, device_report, init_distributed
from dmmp_rec.distributed.model_parallel import plan_facts
from dmmp_rec.distributed.optim import combined_optimizer
from dmmp_rec.distributed.planning.io import save_plan
from dmmp_rec.distributed.runtime import build_sharded_model
from dmmp_rec.errors import InputError
from dmmp_rec.model.precision import enable_tf32, precision_problem
from dmmp_rec.train.best import BestTracker
from dmmp_rec.train.logger import TrainLogger
from dmmp_rec.train.position import TrackedIterator
from dmmp_rec.train.restore import restore_latest
from dmmp_rec.train.resume import table_layouts
from dmmp_rec.train.state import TrainerState
from dmmp_rec.train.validation import validation_metrics


def _maybe_inject_fault(cfg: DmmpConfig, env: DistEnv, step: int) -> None:
    """Kill rank 1 once, on the first attempt (torchelastic counts restarts for us)."""
    first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0
    if cfg.train.fault_at_step == step and env.rank == min(1, env.world_size - 1) and first_attempt:
        print(f"[rank {env.rank}] fault injection: killing myself after step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def _maybe_inject_nan(cfg: DmmpConfig, model: torch.nn.Module, step: int) -> None:
    """Set every dense parameter to NaN after `train.nan_at_step` (gpu-check's own test)."""
    if cfg.train.nan_at_step == step:
        with torch.no_grad():
            for p in model.dense.parameters():  # type: ignore[union-attr]
                p.fill_(float("nan"))


def total_steps(cfg: DmmpConfig, batches_per_epoch: int) -> int:
    """`train.max_steps`, or fewer: the steps of `train.max_epochs` passes over the training
    days at this job's global batch (one pass is the default: docs/model.md shows the teacher
    losing validation AUC as soon as the second pass starts)."""
    steps = cfg.train.max_steps
    if cfg.train.max_epochs is not None:
        steps = min(steps, max(1, math.ceil(cfg.train.max_epochs * batches_per_epoch)))
    return steps


def validate(cfg: DmmpConfig, dmp: torch.nn.Module, env: DistEnv) -> dict[str, float]:
    """AUCs on the validation day: all of it (`eval_batches` null) or its first batches."""
    loader = loader_for_split(cfg, "val", env.rank, env.world_size, drop_last=True)
    limit = cfg.train.eval_batches
    batches = (
        iter(loader) if limit is None else (b for _, b in zip(range(limit), loader, strict=False))
    )
    return validation_metrics(dmp, batches, cfg.features, env.device)


def run_report(cfg: DmmpConfig, env: DistEnv) -> dict[str, Any]:
    """What this job trains on (device, backend, world size, GPU name, precision, TF32), after
    checking the precision suits the device and switching TF32 on for a CUDA job; printed by
    rank 0 and recorded in summary.json, so no run hides a fall-back to the CPU."""
    problem = precision_problem(cfg.train.precision, env.device)
    if problem is not None:
        raise InputError(problem)
    report = {**device_report(env), "precision": cfg.train.precision}
    report["tf32"] = enable_tf32(env.device)
    if env.is_main:
        gpu = f" ({report['gpu_name']})" if report["gpu_name"] else ""
        print(
            f"training on {env.world_size} x {report['device']}{gpu}, backend {env.backend}, "
            f"precision {cfg.train.precision}" + (", TF32 matmuls" if report["tf32"] else ""),
            flush=True,
        )
    return report


@dataclass
class _Job:
    """What one training job works with, built once before its first step."""

    cfg: DmmpConfig
    env: DistEnv
    out: Path
    dmp: DistributedModelParallel
    optimizer: CombinedOptimizer
    dense: KeyedOptimizerWrapper
    loader: ParquetBatchLoader
    checkpoints: CheckpointManager
    best: BestTracker | None
    layouts: dict[str, list[Any]]

    def say(self, *values: object) -> None:
        """Print on the main rank only (every rank runs the same job)."""
        if self.env.is_main:
            print(*values)


def _save_training_plan(cfg: DmmpConfig, env: DistEnv, dmp: DistributedModelParallel) -> None:
    """The plan this job trains with, reusable via sharding.plan=<this file>."""
    save_plan(
        dmp.plan,
        Path(cfg.train.out) / "plan.json",
        {
            "world_size": env.world_size,
            "local_world_size": env.local_world_size,
            "device": env.device.type,
            "config": cfg.source,
            **plan_facts(cfg, env.device.type),
        },
    )


def _build_job(cfg: DmmpConfig, env: DistEnv) -> _Job:
    """The run directory (rank 0 writes config.json and plan.json), the sharded model, its
    optimizer, the training loader and the checkpoint manager."""
    out = Path(cfg.train.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
    dmp = build_sharded_model(cfg, env)
    if env.is_main:
        _save_training_plan(cfg, env, dmp)
    optimizer, dense = combined_optimizer(dmp, cfg.train)
    loader = loader_for_split(cfg, "train", env.rank, env.world_size)
    checkpoints = CheckpointManager(out / "checkpoints", cfg.train.keep_checkpoints)
    best = BestTracker(out, cfg.train.select_best_on) if cfg.train.select_best_on else None
    if best is not None:
        checkpoints.protected = best.step
    layouts = table_layouts(dmp.plan)
    return _Job(cfg, env, out, dmp, optimizer, dense, loader, checkpoints, best, layouts)


@dataclass
class _Outcome:
    """What the training steps leave for the summary."""

    last: dict[str, float] = field(default_factory=dict)  # rank 0's last logged scalars
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation
    eval_s: float = 0.0  # seconds spent validating
    elapsed: float = 0.0  # seconds spent training, validation excluded


class _TrainingLoop:
    """Steps `start + 1 .. total` of `job` through TrainPipelineSparseDist, validating,
    keeping the best and checkpointing on the configured steps."""

    def __init__(self, job: _Job, start: int, total: int, logger: TrainLogger) -> None:
        self.job, self.start, self.total, self.logger = job, start, total, logger
        self.validating = job.cfg.train.eval_batches != 0
        self.outcome = _Outcome()
        self.pipeline = TrainPipelineSparseDist(
            job.dmp, job.optimizer, job.env.device, execute_all_batches=True
        )

    def run(self) -> _Outcome:
        """Train every step; the read-ahead worker (data.prefetch_batches) stops on any exit,
        an error's included, so no forked process outlives a failed job."""
        job, left = self.job, self.total - self.start
        source = training_batches(job.loader, job.env.device, left, job.cfg.data.prefetch_batches)
        try:  # positions travel with the batches
            batches = TrackedIterator(source, source, left)
            t0 = time.perf_counter()
            for step in range(self.start + 1, self.total + 1):
                self._step(step, batches)
            self.outcome.elapsed = time.perf_counter() - t0 - self.outcome.eval_s
            self.pipeline.detach()
        finally:
            source.close()
        return self.outcome

    def _step(self, step: int, batches: TrackedIterator) -> None:
        cfg, inner = self.job.cfg, self.job.dmp.module
        inner.train_step.fill_(step - 1)  # warm-up clock; the pipeline may trace forward once
        out_step = self.pipeline.progress(batches)
        log_now = step % cfg.train.log_every == 0 or step == self.total
        if log_now:  # rank 0's last batch: loss terms, weights, scales, mean gate
            self.outcome.last = out_step.scalars()
        self.logger.step(step, self.outcome.last, log_now)
        _maybe_inject_fault(cfg, self.job.env, step)
        _maybe_inject_nan(cfg, inner, step)
        final = step == self.total
        validate_now = self.validating and (
            final or (cfg.train.eval_every > 0 and step % cfg.train.eval_every == 0)
        )
        if validate_now:
            self._validate(step, final)
        best = self.job.best
        improved = best is not None and validate_now and best.update(step, self.outcome.metrics)
        if improved:
            assert best is not None
            self.job.checkpoints.protected = step
            self.job.say(f"step {step}: best {best.metric} so far, {best.value:.4f}")
        if step % cfg.train.checkpoint_every == 0 or final or improved:
            self._checkpoint(step, batches)
        if best is not None and validate_now and self.job.env.is_main:
            best.write()  # after the save: best.json never names a checkpoint not yet written

    def _validate(self, step: int, final: bool) -> None:
        t_val = time.perf_counter()
        self.pipeline.detach()
        self.outcome.metrics = validate(self.job.cfg, self.job.dmp, self.job.env)
        self.logger.scalars(step, self.outcome.metrics)
        self.outcome.eval_s += time.perf_counter() - t_val
        if not final:
            self.pipeline.attach(self.job.dmp)

    def _checkpoint(self, step: int, batches: TrackedIterator) -> None:
        job = self.job
        position = batches.position_after(step - self.start)
        state = TrainerState(step, job.env.world_size, position, job.layouts, job.cfg.source)
        model_and_optim = {"model": job.dmp.state_dict(), "optim": job.optimizer.state_dict()}
        job.checkpoints.save(step, model_and_optim, state.to_dict())


def _summary(
    job: _Job, report: dict[str, Any], start: int, total: int, outcome: _Outcome
) -> dict[str, Any]:
    """summary.json: the device report, the steps, the throughput and the last figures."""
    global_batch = job.cfg.data.batch_size * job.env.world_size
    trained, elapsed = total - start, outcome.elapsed
    best = job.best
    return {
        **report,
        "steps": total,
        "epochs": round(total / job.loader.num_batches_per_epoch, 3),
        "resumed_from_step": start,
        "world_size": job.env.world_size,
        "global_batch": global_batch,
        "samples_trained": trained * global_batch,
        "seconds": round(elapsed, 2),
        "samples_per_s": round(trained * global_batch / elapsed, 1) if elapsed > 0 else None,
        "last_logged": outcome.last,
        "validation": outcome.metrics,
        "validation_seconds": round(outcome.eval_s, 2),
        "best": best.summary() if best is not None else None,
        "checkpoint": str(list_checkpoints(job.checkpoints.root)[0].path),
        "oov_counts": dict(getattr(job.loader, "oov_counts", {})),
    }


def train(cfg: DmmpConfig, env: DistEnv | None = None) -> dict[str, Any]:
    """Train to `cfg.train.max_steps` (fewer when `max_epochs` passes over the training days
    come first), resuming from the newest usable checkpoint."""
    env = env or init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    report = run_report(cfg, env)
    job = _build_job(cfg, env)
    start = restore_latest(
        job.dmp,
        job.optimizer,
        job.dense,
        job.loader,
        job.checkpoints,
        job.layouts,
        env.world_size,
        job.say,
    )
    total = total_steps(cfg, job.loader.num_batches_per_epoch)
    if start > total:
        raise InputError(
            f"{job.checkpoints.root}: the checkpoint is at step {start}, past this job's budget "
            f"of {total} steps (train.max_steps / train.max_epochs)"
        )
    global_batch = cfg.data.batch_size * env.world_size
    logger = TrainLogger(job.out, total, start, global_batch, env.is_main)
    loop = _TrainingLoop(job, start, total, logger)
    outcome = loop.run()
    if start == total and loop.validating:  # nothing left to train: validate anyway
        outcome.metrics = validate(cfg, job.dmp, env)
    logger.close()
    summary = _summary(job, report, start, total, outcome)
    if env.is_main:
        (job.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
