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
from pathlib import Path
from typing import Any

import torch
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from dmmp_rec.config import DmmpConfig, to_dict
from dmmp_rec.data.loader import loader_for_split
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
from dmmp_rec.train.resume import (
    changed_optimizer_layouts,
    optimizer_state_to_load,
    table_layouts,
)
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


def train(cfg: DmmpConfig, env: DistEnv | None = None) -> dict[str, Any]:
    """Train to `cfg.train.max_steps` (fewer when `max_epochs` passes over the training days
    come first), resuming from the newest usable checkpoint."""
    env = env or init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    report = run_report(cfg, env)
    out = Path(cfg.train.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))

    dmp = build_sharded_model(cfg, env)
    if env.is_main:  # the plan this job trains with, reusable via sharding.plan=<this file>
        save_plan(
            dmp.plan,
            out / "plan.json",
            {
                "world_size": env.world_size,
                "local_world_size": env.local_world_size,
                "device": env.device.type,
                "config": cfg.source,
                **plan_facts(cfg, env.device.type),
            },
        )
    optimizer, dense = combined_optimizer(dmp, cfg.train)
    loader = loader_for_split(cfg, "train", env.rank, env.world_size)
    checkpoints = CheckpointManager(out / "checkpoints", cfg.train.keep_checkpoints)
    say = print if env.is_main else (lambda *_: None)
    best = BestTracker(out, cfg.train.select_best_on) if cfg.train.select_best_on else None
    if best is not None:
        checkpoints.protected = best.step

    start = 0
    layouts = table_layouts(dmp.plan)
    if list_checkpoints(checkpoints.root):
        dense.init_state()  # DCP skips optimizer state that does not exist yet
        model_state, optim_state = dmp.state_dict(), optimizer.state_dict()
        reset: list[str] = []

        def state_to_load(saved: dict[str, Any]) -> dict[str, Any]:
            saved_layouts = TrainerState.from_dict(saved).table_layouts
            reset[:] = changed_optimizer_layouts(saved_layouts, layouts)
            return {"model": model_state, "optim": optimizer_state_to_load(optim_state, reset)}

        restored = checkpoints.restore_latest(state_to_load, log=say)
        if restored is not None:
            info, saved_state, _ = restored
            trainer_state = TrainerState.from_dict(saved_state)
            dmp.load_state_dict(model_state)
            optimizer.load_state_dict(optim_state)
            loader.load_state_dict(trainer_state.loader)
            start = info.step
            say(
                f"resumed from {info.path} (step {start}, written by "
                f"{trainer_state.world_size} ranks, now {env.world_size})"
            )
            if reset:
                say(f"optimizer state re-initialised for re-split tables: {', '.join(reset)}")
        else:
            say("no usable checkpoint: starting from scratch")

    global_batch = cfg.data.batch_size * env.world_size
    total = total_steps(cfg, loader.num_batches_per_epoch)
    if start > total:
        raise InputError(
            f"{checkpoints.root}: the checkpoint is at step {start}, past this job's budget of "
            f"{total} steps (train.max_steps / train.max_epochs)"
        )
    logger = TrainLogger(out, total, start, global_batch, env.is_main)
    pipeline = TrainPipelineSparseDist(dmp, optimizer, env.device, execute_all_batches=True)
    # read ahead by a worker process (data.prefetch_batches); positions travel with batches
    source = training_batches(loader, env.device, total - start, cfg.data.prefetch_batches)
    batches = TrackedIterator(source, source, total - start)
    inner = dmp.module
    last: dict[str, float] = {}
    metrics: dict[str, float] = {}
    validating = cfg.train.eval_batches != 0
    eval_s = 0.0
    t0 = time.perf_counter()
    for step in range(start + 1, total + 1):
        inner.train_step.fill_(step - 1)  # warm-up clock; the pipeline may trace forward once
        out_step = pipeline.progress(batches)
        log_now = step % cfg.train.log_every == 0 or step == total
        if log_now:  # rank 0's last batch: loss terms, weights, scales, mean gate
            last = out_step.scalars()
        logger.step(step, last, log_now)
        _maybe_inject_fault(cfg, env, step)
        _maybe_inject_nan(cfg, inner, step)
        final = step == total
        validate_now = validating and (
            final or (cfg.train.eval_every > 0 and step % cfg.train.eval_every == 0)
        )
        if validate_now:
            t_val = time.perf_counter()
            pipeline.detach()
            metrics = validate(cfg, dmp, env)
            logger.scalars(step, metrics)
            eval_s += time.perf_counter() - t_val
            if not final:
                pipeline.attach(dmp)
        improved = best is not None and validate_now and best.update(step, metrics)
        if improved:
            assert best is not None
            checkpoints.protected = step
            say(f"step {step}: best {best.metric} so far, {best.value:.4f}")
        if step % cfg.train.checkpoint_every == 0 or final or improved:
            position = batches.position_after(step - start)
            state = TrainerState(step, env.world_size, position, layouts, cfg.source)
            model_and_optim = {"model": dmp.state_dict(), "optim": optimizer.state_dict()}
            checkpoints.save(step, model_and_optim, state.to_dict())
        if best is not None and validate_now and env.is_main:
            best.write()  # after the save: best.json never names a checkpoint not yet written
    elapsed = time.perf_counter() - t0 - eval_s
    trained = total - start
    pipeline.detach()
    source.close()
    if start == total and validating:  # nothing left to train: validate anyway
        metrics = validate(cfg, dmp, env)
    logger.close()
    summary = {
        **report,
        "steps": total,
        "epochs": round(total / loader.num_batches_per_epoch, 3),
        "resumed_from_step": start,
        "world_size": env.world_size,
        "global_batch": global_batch,
        "samples_trained": trained * global_batch,
        "seconds": round(elapsed, 2),
        "samples_per_s": round(trained * global_batch / elapsed, 1) if elapsed > 0 else None,
        "last_logged": last,
        "validation": metrics,
        "validation_seconds": round(eval_s, 2),
        "best": best.summary() if best is not None else None,
        "checkpoint": str(list_checkpoints(checkpoints.root)[0].path),
        "oov_counts": dict(getattr(loader, "oov_counts", {})),
    }
    if env.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
