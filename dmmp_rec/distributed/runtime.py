"""Build the sharded model the same way for training, evaluation and export.

One recipe: seed, build DMMP with its EBC on the meta device, mark the tables for the fused
optimiser, plan, wrap in DistributedModelParallel. Training adds the optimisers; inference
loads the model part of a checkpoint (DCP reshards it to this world size). It lives in
distributed/ because train, eval and serving all build the model this way and must not import
each other.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.types import ShardingEnv

from dmmp_rec.config import DmmpConfig
from dmmp_rec.distributed.checkpoint import (
    CheckpointError,
    best_step,
    list_checkpoints,
    step_dir,
    verify,
)
from dmmp_rec.distributed.collectives import rank_mean
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.distributed.model_parallel import resolve_plan, sharders_for
from dmmp_rec.distributed.optim import attach_embedding_optimizer
from dmmp_rec.model.factory import build_model


def build_sharded_model(cfg: DmmpConfig, env: DistEnv) -> DistributedModelParallel:
    """DMMP sharded for this process group, built the same way by train, eval and export.

    Seeded, built with its EBC on meta and the rank mean as the loss weighting's reducer, the
    tables marked for the fused optimiser, planned, and wrapped in DistributedModelParallel.

    Args:
        cfg: the job's config.
        env: this process's place in the process group (rank, world size, device).

    Returns:
        The DistributedModelParallel, freshly initialised.
    """
    torch.manual_seed(cfg.training_seed)
    # every rank weighs the loss terms alike: the weighting's statistics are rank means
    model = build_model(cfg, device=env.device, sparse_device="meta", reduce_losses=rank_mean)
    attach_embedding_optimizer(model.sparse.ebc, cfg.train)
    plan = resolve_plan(cfg, model, env)
    return DistributedModelParallel(
        model,
        env=ShardingEnv.from_process_group(dist.group.WORLD),
        device=env.device,
        plan=plan,
        sharders=sharders_for(cfg, env.device.type),
    )


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint a path names, verified complete.

    A step directory itself; for a run directory the checkpoint that validated best when
    training selected one (best.json), else the newest complete one under it or its
    checkpoints/.

    Args:
        path: a step directory (with DCP's .metadata), or a run directory.

    Returns:
        The step directory to load.
    """
    path = Path(path)
    if (path / ".metadata").is_file():
        verify(path)
        return path
    best = best_step(path)
    if best is not None:
        chosen = step_dir(path / "checkpoints", best)
        verify(chosen)
        return chosen
    for root in (path / "checkpoints", path):
        found = list_checkpoints(root)
        if found:
            verify(found[0].path)
            return found[0].path
    raise CheckpointError(f"{path}: no checkpoint found (expected step-* directories)")


def load_for_inference(
    cfg: DmmpConfig, env: DistEnv, checkpoint: str | Path
) -> DistributedModelParallel:
    """The trained model, sharded for this job's world size, in eval mode.

    DCP reshards the checkpoint to this world size and plan; a checkpoint of another model
    config is a CheckpointError naming the missing key.

    Args:
        cfg: the config the model was trained with (the run's config.json).
        env: this process's place in the process group.
        checkpoint: a step directory or a run directory (see `checkpoint_dir`).

    Returns:
        The DistributedModelParallel with the checkpoint's weights, in eval mode.
    """
    dmp = build_sharded_model(cfg, env)
    state = {"model": dmp.state_dict()}
    directory = checkpoint_dir(checkpoint)
    try:
        dcp.load(state, checkpoint_id=str(directory))
    except RuntimeError as e:  # DCP wraps a missing key in a CheckpointException (RuntimeError)
        missing = _missing_key(str(e))
        if missing is None:
            raise
        raise CheckpointError(
            f"{directory}: the checkpoint has no {missing}: it was trained with another model "
            "config than the one given (evaluate with the run's config.json, or the config it "
            "was trained with)"
        ) from None
    dmp.load_state_dict(state["model"])
    dmp.eval()
    return dmp


def _missing_key(message: str) -> str | None:
    """The state_dict key DCP reports missing from a checkpoint, if that is the error."""
    marker = "Missing key in checkpoint state_dict: "
    at = message.find(marker)
    if at < 0:
        return None
    return message[at + len(marker) :].split()[0].rstrip(".")
