"""`dmmp-rec compare --config FILE --out reports/`: DMMP, every baseline and the torch-rechub
peers trained with one budget and evaluated on held-out data; one table, targets, a plot."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from dmmp_rec.cli import add_config_arguments, config_from_args
from dmmp_rec.commands.option_types import non_negative_int, positive_int
from dmmp_rec.errors import InputError

HELP = "train and evaluate DMMP, its baselines and torch-rechub peers; write the comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="report directory (runs/ go inside)")
    _add_training_arguments(parser)
    _add_evaluation_arguments(parser)
    _add_execution_arguments(parser)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """What is trained: steps, processes, models, variants, seeds."""
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="training steps per model (default train.max_steps)",
    )
    parser.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="processes for our models (> 1 launches torchrun); peers use the same global batch",
    )
    parser.add_argument(
        "--models", nargs="+", default=[], help="a subset of the models, by name (default all)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME=BASE key=value ...'",
        help="also train one of our models with more overrides, e.g. "
        "'dmmp_fixed=dmmp model.loss.weighting=fixed' (repeatable)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="training seeds per model (the config's training seed and the next N-1); the "
        "world and the ground-truth user samples stay fixed, so runs are paired by seed",
    )


def _add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """What is evaluated: the days and the user samples."""
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["val", "test"],
        choices=["val", "test"],
        help="days to evaluate: choose on val; add test only for the final table",
    )
    parser.add_argument(
        "--oracle-users",
        type=non_negative_int,
        default=2000,
        help="seeded sample of each day's users for the ground-truth metrics",
    )
    parser.add_argument(
        "--teacher-users",
        type=non_negative_int,
        default=0,
        help="users of the sample the teacher ranks the whole catalogue for (slow; 0: skip)",
    )


def _add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """How this process runs: reuse of finished runs, threads, progress."""
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep runs under --out that finished (train summary and every split's report) "
        "instead of retraining them",
    )
    parser.add_argument(
        "--threads",
        type=non_negative_int,
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
    for variant in args.variant:
        argv += ["--variant", variant]
    if args.seeds != 1:
        argv += ["--seeds", str(args.seeds)]
    if args.splits != ["val", "test"]:
        argv += ["--splits", *args.splits]
    if args.oracle_users != 2000:
        argv += ["--oracle-users", str(args.oracle_users)]
    if args.teacher_users:
        argv += ["--teacher-users", str(args.teacher_users)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return shlex.join([*argv, *args.overrides])


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from dmmp_rec.compare.models import select_models
    from dmmp_rec.compare.runner import CompareOptions, run_comparison
    from dmmp_rec.distributed.env import init_distributed, shutdown

    try:
        select_models(args.models, args.variant)
    except ValueError as e:
        raise InputError(str(e)) from None
    options = CompareOptions(
        out=Path(args.out),
        steps=args.steps,
        nproc=args.nproc,
        models=list(args.models),
        variants=list(args.variant),
        seeds=args.seeds,
        splits=tuple(args.splits),
        oracle_users=args.oracle_users,
        teacher_users=args.teacher_users,
        reuse=args.reuse,
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
        found = run_comparison(cfg, env, options)
    finally:
        shutdown()
    targets = found.targets or []
    met = sum(t.passed is True for t in targets)
    unmeasured = sum(t.passed is None for t in targets)
    print(f"targets (test day): {met} of {len(targets)} met ({unmeasured} not measured)")
    for t in targets:
        print(f"  [{t.verdict}] {t.target}: {t.measured}")
    return 0
