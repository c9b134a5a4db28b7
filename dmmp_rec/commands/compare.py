"""`dmmp-rec compare --config FILE --out reports/`: DMMP, every baseline and the torch-rechub
peers trained with one budget and evaluated on held-out data; one table, targets, a plot."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "train and evaluate DMMP, its baselines and torch-rechub peers; write the comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="report directory (runs/ go inside)")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per model (default train.max_steps)"
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes for our models (> 1 launches torchrun); peers use the same global batch",
    )
    parser.add_argument(
        "--models", nargs="+", default=[], help="a subset of the models, by name (default all)"
    )
    parser.add_argument(
        "--oracle-users",
        type=int,
        default=2000,
        help="seeded sample of test users for the ground-truth metrics",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads of this process (0: torch's default); 1 avoids OpenMP "
        "spin-waiting on a machine whose cores are shared with other jobs",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _command_line(args: argparse.Namespace) -> str:
    """The command as a user would type it, for the top of the report."""
    argv = ["dmmp-rec", "compare", "--config", args.config, "--out", args.out]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    if args.nproc != 1:
        argv += ["--nproc", str(args.nproc)]
    if args.models:
        argv += ["--models", *args.models]
    if args.oracle_users != 2000:
        argv += ["--oracle-users", str(args.oracle_users)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return shlex.join([*argv, *args.overrides])


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.nproc < 1 or args.threads < 0:
        print("dmmp-rec compare: need --nproc >= 1 and --threads >= 0", file=sys.stderr)
        return 2
    from dmmp_rec.compare.models import select_models
    from dmmp_rec.compare.runner import CompareOptions, run_comparison
    from dmmp_rec.distributed.env import init_distributed, shutdown

    try:
        select_models(args.models)
    except ValueError as e:
        print(f"dmmp-rec compare: {e}", file=sys.stderr)
        return 2
    options = CompareOptions(
        out=Path(args.out),
        steps=args.steps,
        nproc=args.nproc,
        models=list(args.models),
        oracle_users=args.oracle_users,
        progress=not args.quiet,
        command=_command_line(args),
    )
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    env = init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    try:
        result = run_comparison(cfg, env, options)
    finally:
        shutdown()
    misses = [t for t in result["targets"] if t["passed"] is False]
    print(f"targets: {len(result['targets']) - len(misses)} of {len(result['targets'])} met")
    for t in result["targets"]:
        verdict = {True: "pass", False: "MISS", None: "not measured"}[t["passed"]]
        print(f"  [{verdict}] {t['target']}: {t['measured']}")
    return 0
