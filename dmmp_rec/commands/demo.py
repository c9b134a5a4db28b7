"""`dmmp-rec demo --config FILE`: the main job, end to end, as a user would run it.

Each stage is the real command a user runs, in its own process: synth -> torchx training on
2 local processes -> eval -> retrieve. Stages whose command is not built yet are skipped with
a note, so the demo always shows what exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "run the main job: synthetic world, 2-process training via torchx, evaluation, retrieval"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--nproc", type=int, default=2, help="local training processes")
    parser.add_argument("--users", type=int, default=3, help="users whose candidates to print")


def _stage(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    # torchx's local_cwd scheduler starts `torchrun` from PATH: make it this environment's
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run(argv, check=True, cwd=REPO, env={**os.environ, "PATH": path})
    print(f"== {title}: done in {time.perf_counter() - t0:.1f} s", flush=True)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    exe = [sys.executable, "-m", "dmmp_rec.cli"]
    common = ["--config", args.config, *args.overrides]
    bin_dir = Path(sys.executable).parent
    world = Path(cfg.data.path) / "world.json"
    if world.exists():
        print(f"== synthetic world: reusing {world} (delete {cfg.data.path} to regenerate)")
    else:
        _stage("synthetic world", [*exe, "synth", *common])
    _stage(
        f"training on {args.nproc} local processes (torchx, local_cwd)",
        [
            str(bin_dir / "torchx"),
            "run",
            "-s",
            "local_cwd",
            str(REPO / "launchers" / "dmmp.py") + ":train",
            "--config",
            args.config,
            "--nproc_per_node",
            str(args.nproc),
            "--",
            *args.overrides,
        ],
    )
    checkpoint = Path(cfg.train.out)
    if _has("dmmp_rec.commands.evaluate"):
        _stage("evaluation", [*exe, "eval", *common, "--checkpoint", str(checkpoint)])
    else:
        print("\n== evaluation: not built yet (issue 5); see the training summary above")
    if _has("dmmp_rec.commands.export") and _has("dmmp_rec.commands.retrieve"):
        export = checkpoint / "export"
        _stage("export", [*exe, "export", "--checkpoint", str(checkpoint), "--out", str(export)])
        _stage(
            "candidates for a few users",
            [*exe, "retrieve", "--export", str(export), "--demo-users", str(args.users), "-k", "5"],
        )
    else:
        print("== retrieval: not built yet (issue 5)")
    return 0
