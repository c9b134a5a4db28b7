"""Train a few steps on however many ranks this runs and write every rank's loss-weighting
state, so a test can check that all ranks weigh the terms identically although each trains
on its own batches.
Usage: python weights_across_ranks.py CONFIG STEPS OUT.json [overrides...]
"""

from __future__ import annotations

import json
import sys

import torch.distributed as dist
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from dmmp_rec.config import load_config
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.optim import combined_optimizer
from dmmp_rec.distributed.runtime import build_sharded_model


def main() -> None:
    config, steps, out, *overrides = sys.argv[1:]
    cfg = load_config(config, overrides)
    env = init_distributed("cpu")
    dmp = build_sharded_model(cfg, env)
    optimizer, _ = combined_optimizer(dmp, cfg.train)
    loader = loader_for_split(cfg, "train", env.rank, env.world_size)
    pipeline = TrainPipelineSparseDist(dmp, optimizer, env.device, execute_all_batches=True)
    batches = iter(loader.forever())
    last = None
    for _ in range(int(steps)):
        last = pipeline.progress(batches)
    weighting = dmp.module.dense.weighting
    mine = {
        "buffers": {k: v.tolist() for k, v in weighting.named_buffers()},
        "weights": {f"weight/{k}": float(v) for k, v in last.weights.items()},
        "losses": {f"loss/{k}": float(v) for k, v in last.losses.items()},
    }
    every: list = [None] * env.world_size
    dist.all_gather_object(every, mine)
    if env.rank == 0:
        with open(out, "w") as f:
            json.dump(every, f)
    shutdown()


if __name__ == "__main__":
    main()
