"""Test support: the tiny world's config and a torchrun runner (fixtures live in conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dmmp_rec.config import DmmpConfig, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic.yaml"

# A world small enough to generate in ~2 s and train a few steps in seconds, with dims small
# enough that the two-rank tests stay fast; every table keeps the default feature list.
TINY = [
    "synthetic.num_users=2000",
    "synthetic.num_items=3000",
    "synthetic.num_impressions=60000",
    "synthetic.num_days=6",
    "synthetic.chunk_rows=30000",
    "data.batch_size=128",
    "data.shuffle_buffer=2048",
    "model.teacher.expert_dims=[32]",
    "model.teacher.tower_dims=[16]",
    "model.student.tower_dims=[32]",
    "model.student.out_dim=8",
    "model.student.gate_dims=[8]",
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
    target = ["-m", "dmmp_rec.cli"] if not argv[0].endswith(".py") else []
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--max_restarts",
        str(max_restarts),
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        "localhost:0",
        *target,
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "WARNING"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode})\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
        )
    return result
