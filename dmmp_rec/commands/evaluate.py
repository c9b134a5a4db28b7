"""`dmmp-rec eval --config FILE --checkpoint DIR [--out report.json]`: teacher metrics with their
Bayes ceilings and full-corpus retrieval of the student; one process or one rank of torchrun."""

from __future__ import annotations

import argparse

from dmmp_rec.cli import add_config_arguments
from dmmp_rec.commands.option_types import (
    non_negative_int,
    number_list,
    positive_int,
    positive_int_list,
)
from dmmp_rec.commands.run_config import config_for_checkpoint
from dmmp_rec.errors import InputError
from dmmp_rec.eval.frontier import DEFAULT_BETAS

HELP = "evaluate a checkpoint: teacher AUC/log loss/calibration, Bayes ceilings, retrieval@K"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the model's shape comes from the run's config.json; --config gives data and the rest
    add_config_arguments(parser, required=False)
    parser.add_argument(
        "--checkpoint", required=True, help="run dir (train.out), its checkpoints/ or a step dir"
    )
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    parser.add_argument(
        "--k", type=positive_int_list, default=[10, 50, 100], help="cut-offs K, comma-separated"
    )
    parser.add_argument(
        "--oracle-users",
        type=non_negative_int,
        default=2000,
        help="seeded sample of test users for the ground-truth metrics (0: skip them)",
    )
    parser.add_argument(
        "--teacher-users",
        type=non_negative_int,
        default=0,
        help="also rank the whole catalogue by the teacher's pCTCVR for this many users of the "
        "sample, and the student on the same users (slow: a teacher forward per pair; 0: skip)",
    )
    parser.add_argument(
        "--encode-batch",
        type=positive_int,
        default=4096,
        help="rows per call when encoding vectors",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["val", "test"],
        help="labelled split; make choices on val (its oracle sample never shares a user with "
        "test's), read test once for the final numbers",
    )
    parser.add_argument(
        "--betas",
        type=number_list,
        default=None,
        help="serving-knob grid for the frontier of three-tower models, comma-separated "
        "(inf / -inf allowed); default: " + ",".join(f"{b:g}" for b in DEFAULT_BETAS),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    cfg = config_for_checkpoint(args, "eval")
    ks: list[int] = args.k  # checked while parsing (option_types)
    betas: list[float] = list(DEFAULT_BETAS) if args.betas is None else args.betas
    from dmmp_rec.distributed.env import init_distributed, shutdown
    from dmmp_rec.eval.report import EvalOptions, evaluate, format_report, write_report
    from dmmp_rec.eval.retrieval_eval import RetrievalOptions

    options = EvalOptions(
        retrieval=RetrievalOptions(
            ks=ks,
            oracle_users=args.oracle_users,
            split=args.split,
            batch_size=args.encode_batch,
            seed=cfg.seed,
            betas=betas,
            teacher_users=args.teacher_users,
        ),
        progress=not args.quiet,
    )
    try:
        options.retrieval.validate()
    except ValueError as e:
        raise InputError(str(e)) from None
    env = init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    try:
        report = evaluate(cfg, args.checkpoint, env, options)
    finally:
        shutdown()
    if env.is_main:
        print(format_report(report))
        if args.out:
            print(f"report written to {write_report(report, args.out)}")
    return 0
