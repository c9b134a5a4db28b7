"""Atomic, self-verifying torch.distributed.checkpoint (DCP) checkpoints with fallback.

Layout under the checkpoint root:

    step-00000500/            a complete checkpoint (renamed into place only when complete)
        .metadata, __0_0.distcp, ...   DCP files: model, optimizers (sharded tensors included)
        trainer_state.json    step, world size, loader position, config source
        MANIFEST.json         every file's size, written last; its absence means incomplete
    .tmp-step-00001000/       a checkpoint being written (ignored, removed on the next save)

Why a manifest: DCP writes files per rank and a `.metadata` file; a job killed mid-write or a
copy cut short leaves a directory that looks complete. Sizes recorded after the write let a
restart detect a truncated file before it is loaded, report it, and fall back to the previous
checkpoint. A load that still fails (a corrupt file of the right size) falls back the same way.
DCP reshards on load, so a checkpoint written by N ranks loads on M ranks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from dmmp_rec.distributed.env import collective_device
from dmmp_rec.errors import DmmpError

PREFIX = "step-"
TMP_PREFIX = ".tmp-step-"
MANIFEST = "MANIFEST.json"
TRAINER_STATE = "trainer_state.json"


class CheckpointError(DmmpError, RuntimeError):
    """A checkpoint that cannot be used; the message names the directory and the reason."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint directory found under a root.

    Args:
        path (Path): the `step-XXXXXXXX` directory.
        step (int): the training step it holds, from its name.
    """

    path: Path
    step: int


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _broadcast(obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank (so all ranks take the same decision)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=collective_device())
    return box[0]


def _all_ok(ok: bool) -> bool:
    """True on every rank when `ok` is true on every rank. The flag lives on the group's
    device: NCCL (GPU jobs) refuses CPU tensors, and every resume comes through here."""
    if not dist.is_initialized():
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64, device=collective_device())
    dist.all_reduce(flag)
    return int(flag.item()) == 0


def step_dir(root: Path, step: int) -> Path:
    """The directory the checkpoint of `step` has (or will have) under `root`.

    Args:
        root (Path): the checkpoint root.
        step (int): the training step, >= 0.

    Returns:
        Path: root / "step-XXXXXXXX" (zero-padded to 8 digits, so names sort by step).
    """
    return root / f"{PREFIX}{step:08d}"


def list_checkpoints(root: str | Path) -> list[CheckpointInfo]:
    """Checkpoint directories (`step-<digits>`) under `root`, newest first; none is verified.

    Args:
        root (str | Path): the checkpoint root (need not exist).

    Returns:
        list[CheckpointInfo]: sorted by step, descending; empty when there are none.
    """
    root = Path(root)
    found = []
    for path in root.glob(f"{PREFIX}*"):
        suffix = path.name[len(PREFIX) :]
        if path.is_dir() and suffix.isdigit():
            found.append(CheckpointInfo(path, int(suffix)))
    return sorted(found, key=lambda c: c.step, reverse=True)


def verify(path: Path) -> None:
    """Raise CheckpointError unless every file in the manifest is there with its recorded size.

    Args:
        path (Path): a checkpoint directory.
    """
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST} (the write did not finish)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({e})") from None
    for name, size in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: file {name} is missing")
        actual = file.stat().st_size
        if actual != size:
            raise CheckpointError(
                f"{path}: file {name} is truncated or changed ({actual} bytes, expected {size})"
            )


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state a checkpoint was saved with (step, world size, loader position, config).

    Args:
        path (Path): a checkpoint directory.

    Returns:
        dict[str, Any]: the parsed trainer_state.json.
    """
    return json.loads((path / TRAINER_STATE).read_text())


class CheckpointManager:
    """Saves and restores DCP checkpoints under one root.

    It keeps the newest `keep` and the step in `protected` (the best one by validation, when
    training selects one).

    Args:
        root (str | Path): the checkpoint root (made on the first save).
        keep (int): newest checkpoints kept, >= 1 (ValueError otherwise); default 2.
    """

    def __init__(self, root: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep
        self.protected: int | None = None

    def save(self, step: int, state: dict[str, Any], trainer_state: dict[str, Any]) -> Path:
        """Write the checkpoint of `step` atomically. Collective: every rank calls it.

        DCP writes into a temporary directory; rank 0 then adds trainer_state.json and the manifest,
        renames it into place (replacing a checkpoint of the same step) and prunes all but the
        newest `keep` and the protected step.

        Args:
            step (int): the training step; names the directory.
            state (dict[str, Any]): the state dict DCP saves (model, optimizers; sharded tensors
                included).
            trainer_state (dict[str, Any]): JSON-serialisable trainer state, saved beside it with
                `step` added.

        Returns:
            Path: the final checkpoint directory.
        """
        final = step_dir(self.root, step)
        tmp = self.root / f"{TMP_PREFIX}{step:08d}"
        if _rank() == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        _barrier()
        dcp.save(state, checkpoint_id=str(tmp))
        _barrier()
        if _rank() == 0:
            (tmp / TRAINER_STATE).write_text(json.dumps({"step": step, **trainer_state}, indent=1))
            files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        for old in list_checkpoints(self.root)[self.keep :]:
            if old.step != self.protected:
                shutil.rmtree(old.path, ignore_errors=True)
        for stale in self.root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)

    def restore_latest(
        self, build_state: Callable[[dict[str, Any]], dict[str, Any]], log: Any = print
    ) -> tuple[CheckpointInfo, dict[str, Any], dict[str, Any]] | None:
        """Load the newest usable checkpoint; older ones when it is truncated or corrupt.

        Collective: rank 0 verifies and chooses, every rank loads the same directory, and a load
        that fails on any rank moves all ranks on to the next older one.

        Args:
            build_state (Callable[[dict[str, Any]], dict[str, Any]]): given the checkpoint's
                trainer state, returns the state dict to load into (in place), so it can leave out
                what does not carry over.
            log (Any): called with one line for each unusable checkpoint (on rank 0); print by
                default.

        Returns:
            tuple[CheckpointInfo, dict[str, Any], dict[str, Any]] | None: (info, trainer_state,
            loaded state), or None when no checkpoint is usable (or there is none).
        """
        candidates = [c.path for c in list_checkpoints(self.root)]
        candidates = [Path(p) for p in _broadcast([str(p) for p in candidates])]
        for path in candidates:
            problem = None
            if _rank() == 0:
                try:
                    verify(path)
                except CheckpointError as e:
                    problem = str(e)
            problem = _broadcast(problem)
            if problem is None:
                try:
                    trainer_state = read_trainer_state(path)
                    state = build_state(trainer_state)
                    dcp.load(state, checkpoint_id=str(path))
                    ok = True
                except Exception as e:  # a corrupt file of the right size
                    problem = f"{path}: load failed ({type(e).__name__}: {e})"
                    ok = False
                if _all_ok(ok):
                    info = CheckpointInfo(path, int(path.name[len(PREFIX) :]))
                    return info, trainer_state, state
                problem = problem or f"{path}: load failed on another rank"
            if _rank() == 0:
                log(f"checkpoint unusable, trying an older one: {problem}")
        return None


# The run directory's record of the checkpoint that validated best (written by train.best;
# read here so that evaluation and export load that checkpoint without importing train).
BEST_FILE = "best.json"


def best_step(run_dir: Path) -> int | None:
    """The step recorded in a run directory's best.json, if any.

    Args:
        run_dir (Path): the training run's output directory.

    Returns:
        int | None: the best validated checkpoint's step; None without best.json or a step in it.
    """
    path = Path(run_dir) / BEST_FILE
    if not path.is_file():
        return None
    step = json.loads(path.read_text()).get("step")
    return None if step is None else int(step)
