"""`dmmp-rec train --config FILE [overrides]`: one process, or one rank under torchrun/torchx."""

from __future__ import annotations

import argparse
import json

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "train DMMP (DistributedModelParallel; run under torchrun or torchx for several ranks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from dmmp_rec.distributed.env import init_distributed, shutdown
    from dmmp_rec.train.trainer import train

    env = init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    try:
        summary = train(cfg, env)
    finally:
        shutdown()
    if env.is_main:
        print("training summary:")
        print(json.dumps(summary, indent=1))
    return 0
