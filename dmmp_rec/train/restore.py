"""Resume a training job: weights, optimizer state and the loader's position from the newest
usable checkpoint (resume.py decides which optimizer state a changed table layout keeps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

from dmmp_rec.data.loader import ParquetBatchLoader
from dmmp_rec.distributed.checkpoint import CheckpointManager, list_checkpoints
from dmmp_rec.train.resume import changed_optimizer_layouts, optimizer_state_to_load
from dmmp_rec.train.state import TrainerState


class StateToLoad:
    """DCP's load target for one checkpoint, chosen from that checkpoint's trainer state: the
    model's state and the optimizer's, less the optimizer state of the tables whose layout
    changed since it was written (named in `reset`, so the trainer can say so)."""

    def __init__(
        self,
        model_state: dict[str, Any],
        optim_state: dict[str, Any],
        layouts: dict[str, list[Any]],
    ) -> None:
        self.model_state = model_state
        self.optim_state = optim_state
        self.layouts = layouts
        self.reset: list[str] = []

    def __call__(self, saved: dict[str, Any]) -> dict[str, Any]:
        saved_layouts = TrainerState.from_dict(saved).table_layouts
        self.reset = changed_optimizer_layouts(saved_layouts, self.layouts)
        return {
            "model": self.model_state,
            "optim": optimizer_state_to_load(self.optim_state, self.reset),
        }


def restore_latest(
    dmp: nn.Module,
    optimizer: CombinedOptimizer,
    dense: KeyedOptimizerWrapper,
    loader: ParquetBatchLoader,
    checkpoints: CheckpointManager,
    layouts: dict[str, list[Any]],
    world_size: int,
    say: Callable[..., Any],
) -> int:
    """Load the newest usable checkpoint into `dmp`, `optimizer` and `loader`; returns its
    step, or 0 when there is none. `layouts` are this job's table layouts (which optimizer
    state carries over), `world_size` its ranks (for the log). Collective: every rank calls it."""
    if not list_checkpoints(checkpoints.root):
        return 0
    dense.init_state()  # DCP skips optimizer state that does not exist yet
    target = StateToLoad(dmp.state_dict(), optimizer.state_dict(), layouts)
    restored = checkpoints.restore_latest(target, log=say)
    if restored is None:
        say("no usable checkpoint: starting from scratch")
        return 0
    info, saved_state, _ = restored
    trainer_state = TrainerState.from_dict(saved_state)
    dmp.load_state_dict(target.model_state)
    optimizer.load_state_dict(target.optim_state)
    loader.load_state_dict(trainer_state.loader)
    say(
        f"resumed from {info.path} (step {info.step}, written by "
        f"{trainer_state.world_size} ranks, now {world_size})"
    )
    if target.reset:
        say(f"optimizer state re-initialised for re-split tables: {', '.join(target.reset)}")
    return info.step
