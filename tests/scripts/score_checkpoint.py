"""Score fixed validation batches with a checkpoint, on however many ranks this runs.

Every rank feeds the same batches (read as one rank would), so the predictions do not depend
on the world size; rank 0 writes them to OUT.npz. Used to check that a checkpoint saved on two
ranks predicts the same on one.
Usage: python score_checkpoint.py CONFIG CHECKPOINT OUT.npz [overrides...]
"""

from __future__ import annotations

import sys

import numpy as np

from dmmp_rec.config import load_config
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.runtime import load_for_inference
from dmmp_rec.train.validation import score_batches


def main() -> None:
    config, checkpoint, out, *overrides = sys.argv[1:]
    cfg = load_config(config, overrides)
    env = init_distributed("cpu")
    dmp = load_for_inference(cfg, env, checkpoint)
    loader = loader_for_split(cfg, "val", rank=0, world_size=1, drop_last=True)
    batches = (b for _, b in zip(range(3), loader, strict=False))
    scores = score_batches(dmp, batches, cfg.features, env.device)
    if env.rank == 0:
        # all ranks scored the same rows: keep rank 0's copy
        n = len(scores["click"]) // env.world_size
        np.savez(out, **{k: v[:n] for k, v in scores.items()})
    shutdown()


if __name__ == "__main__":
    main()
