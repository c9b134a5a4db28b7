"""`dmmp-rec eval --config FILE --checkpoint DIR [--out report.json]`: teacher metrics with their
Bayes ceilings and full-corpus retrieval of the student; one process or one rank of torchrun."""

from __future__ import annotations

import argparse

from dmmp_rec.cli import add_config_arguments
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
    parser.add_argument("--k", default="10,50,100", help="cut-offs K, comma-separated")
    parser.add_argument(
        "--oracle-users",
        type=int,
        default=2000,
        help="seeded sample of test users for the ground-truth metrics (0: skip them)",
    )
    parser.add_argument(
        "--teacher-users",
        type=int,
        default=0,
        help="also rank the whole catalogue by the teacher's pCTCVR for this many users of the "
        "sample, and the student on the same users (slow: a teacher forward per pair; 0: skip)",
    )
    parser.add_argument(
        "--encode-batch", type=int, default=4096, help="rows per call when encoding vectors"
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
        default=None,
        help="serving-knob grid for the frontier of three-tower models, comma-separated "
        "(inf / -inf allowed); default: " + ",".join(f"{b:g}" for b in DEFAULT_BETAS),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    cfg = config_for_checkpoint(args, "eval")
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise InputError(f"--k wants comma-separated integers, got {args.k!r}") from None
    try:
        betas = list(DEFAULT_BETAS) if args.betas is None else _floats(args.betas)
    except ValueError:
        raise InputError(f"--betas wants comma-separated numbers, got {args.betas!r}") from None
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
