"""Train a torch-rechub peer with torch-rechub's own trainers on our Parquet batches.

`MTLTrainer.train_one_epoch` and `MatchTrainer.train_one_epoch` iterate any sequence of
`(input dict, labels)` pairs, so the peers use their library's loss, loss combination (ESMM:
CTR + CTCVR; MMoE/PLE: the mean of the task losses; DSSM point-wise BCE on clicks) and optimizer
step as a user would, fed by our loader: the same rows in the same seeded order, the same number
of steps and samples per step as our models, and the seed set before the model is built.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch_rechub.trainers import MatchTrainer, MTLTrainer

from dmmp_rec.compare.rechub_models import RechubKind, RechubPeer
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.loader import loader_for_split


def _pairs(
    peer: RechubPeer, cfg: DmmpConfig, steps: int, batch_size: int
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    run_cfg = copy.deepcopy(cfg)
    run_cfg.data.batch_size = batch_size
    loader = loader_for_split(run_cfg, "train", 0, 1)
    for batch in islice(loader.forever(), steps):
        yield peer.inputs(batch.features), peer.labels(batch.click, batch.conversion)


def train_rechub(
    kind: RechubKind,
    cfg: DmmpConfig,
    steps: int,
    batch_size: int,
    device: torch.device,
    out: str | Path,
) -> tuple[RechubPeer, dict[str, Any]]:
    """Train peer `kind` for `steps` batches of `batch_size` rows; writes `<out>/summary.json`
    and the weights `<out>/model.pt`. Returns the trained peer (eval mode) and the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.training_seed)
    peer = RechubPeer(kind, cfg)
    optimizer_params = {"lr": cfg.train.dense_lr, "weight_decay": cfg.train.weight_decay}
    if kind == "dssm":
        trainer: Any = MatchTrainer(
            peer.model,
            mode=0,
            optimizer_params=optimizer_params,
            n_epoch=1,
            device=str(device),
            model_path=str(out),
        )
    else:
        trainer = MTLTrainer(
            peer.model,
            task_types=["classification"] * peer.task_count,
            optimizer_params=optimizer_params,
            n_epoch=1,
            device=str(device),
            model_path=str(out),
        )
    t0 = time.perf_counter()
    losses = trainer.train_one_epoch(_pairs(peer, cfg, steps, batch_size))
    seconds = time.perf_counter() - t0
    peer.model.eval()
    torch.save(peer.model.state_dict(), out / "model.pt")
    summary = {
        "peer": f"torch-rechub {kind}",
        "steps": steps,
        "batch_size": batch_size,
        "samples_trained": steps * batch_size,
        "seconds": round(seconds, 2),
        "samples_per_s": round(steps * batch_size / seconds, 1) if seconds > 0 else None,
        "final_epoch_loss": losses if isinstance(losses, list) else float(losses),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return peer, summary
