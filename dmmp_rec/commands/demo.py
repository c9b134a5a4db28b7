"""`dmmp-rec demo --config FILE`: the main job, end to end, as a user would run it.

Each stage is the real command a user runs, in its own process: synth -> torchx training on
2 local processes -> eval -> export -> retrieve, then a short summary: where the model, the
report and the export are, the teacher's AUCs, the retrieval figures and each stage's time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from dmmp_rec.cli import add_config_arguments, config_from_args
from dmmp_rec.commands.demo_summary import summary_lines
from dmmp_rec.commands.option_types import positive_int

HELP = "run the main job: synthetic world, 2-process training via torchx, evaluation, retrieval"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--nproc", type=positive_int, default=2, help="local training processes")
    parser.add_argument(
        "--users", type=positive_int, default=3, help="users whose candidates to print"
    )


def _stage(title: str, argv: list[str], extra_env: dict[str, str] | None = None) -> float:
    """Run one stage's command; returns its wall time in seconds."""
    print(f"\n== {title}\n$ {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    # torchx's local_cwd scheduler starts `torchrun` from PATH: make it this environment's
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, **(extra_env or {})}
    subprocess.run(argv, check=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    print(f"== {title}: done in {seconds:.1f} s", flush=True)
    return seconds


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    exe = [sys.executable, "-m", "dmmp_rec.cli"]
    common = ["--config", args.config, *args.overrides]
    bin_dir = Path(sys.executable).parent
    stages: list[tuple[str, float]] = []
    world = Path(cfg.data.path) / "world.json"
    if world.exists():
        print(f"== synthetic world: reusing {world} (delete {cfg.data.path} to regenerate)")
    else:
        stages.append(("synth", _stage("synthetic world", [*exe, "synth", *common])))
    train_argv = [
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
    ]
    # torchrun sets one thread per worker and prints a 4-line notice unless it is already set
    threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    title = f"training on {args.nproc} local processes (torchx, local_cwd)"
    stages.append(("training", _stage(title, train_argv, threads)))
    checkpoint = Path(cfg.train.out)
    report = checkpoint / "eval_report.json"
    stages.append(
        (
            "evaluation",
            _stage(
                "evaluation",
                [*exe, "eval", *common, "--checkpoint", str(checkpoint), "--out", str(report)],
            ),
        )
    )
    export = checkpoint / "export"
    argv = [*exe, "export", "--checkpoint", str(checkpoint), "--out", str(export)]
    stages.append(("export", _stage("export", argv)))
    argv = [*exe, "retrieve", "--export", str(export), "--demo-users", str(args.users), "-k", "5"]
    stages.append(("retrieval", _stage("candidates for a few users", argv)))
    print("\n".join(summary_lines(checkpoint, report, export, stages)))
    return 0
