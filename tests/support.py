"""Test support: the tiny world's config and a torchrun runner (fixtures live in conftest)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from dmmp_rec.config import DmmpConfig, load_config
from dmmp_rec.config.presets import TINY_WORLD
from dmmp_rec.distributed.launch import CLI_MODULE, torchrun_command

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic.yaml"

# The tiny world (dmmp_rec/config/presets.py), with a short warm-up and frequent logs for tests.
TINY = [
    *TINY_WORLD,
    "model.loss.distill_warmup_steps=5",
    "train.log_every=5",
    "train.eval_batches=4",
]


def tiny_overrides(world: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY, f"data.path={world}", f"train.out={out}", *extra]


def tiny_config(world: Path, out: Path, *extra: str) -> DmmpConfig:
    return load_config(CONFIG, tiny_overrides(world, out, *extra))


def run_ranks(
    nproc: int, argv: list[str], max_restarts: int = 0, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m dmmp_rec.cli ARGV` (or a script path) on `nproc` local gloo ranks."""
    target = list(CLI_MODULE) if not argv[0].endswith(".py") else []
    cmd = torchrun_command(nproc, [*target, *argv], max_restarts)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "WARNING"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode})\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
        )
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, fn: Callable[..., None], world_size: int, port: int, args: tuple) -> None:
    """One spawned rank: the launch protocol torchrun would set, then the project's own join."""
    from dmmp_rec.distributed.env import init_distributed, shutdown

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        OMP_NUM_THREADS="1",
    )
    env = init_distributed("cpu", timeout_s=60)
    try:
        fn(env, *args)
    finally:
        shutdown()


def spawn_ranks(fn: Callable[..., None], world_size: int, *args: object) -> None:
    """Run `fn(env, *args)` on `world_size` gloo ranks in fresh processes (faster than a
    torchrun of the CLI; `fn` must be a module-level function). A rank's exception fails the
    call with that rank's traceback."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(fn, world_size, _free_port(), args), nprocs=world_size, join=True)
