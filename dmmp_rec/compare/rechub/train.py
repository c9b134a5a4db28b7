"""Train a torch-rechub peer with torch-rechub's own trainers on our Parquet batches.

`MTLTrainer.train_one_epoch` and `MatchTrainer.train_one_epoch` iterate any sequence of
`(input dict, labels)` pairs, so the peers use their library's loss, loss combination (ESMM:
CTR + CTCVR; MMoE/PLE: the mean of the task losses; DSSM: cross-entropy of each positive against
the batch's other items, `MatchTrainer(mode=0, in_batch_neg=True)`) and optimizer step as a user
would, fed by our loader: the same rows in the same seeded order, the same number of steps and
rows per step as our models, and the seed set before the model is built. In-batch training
treats every row as a positive pair, so DSSM trains, at each step, on the clicked rows of that
step's batch (a step with fewer than two clicks has no negatives and is skipped, and counted).
The optimiser is the recipe's (rechub/recipes.py), passed through the trainers' `optimizer_fn`.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch_rechub.trainers import MatchTrainer, MTLTrainer
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from dmmp_rec.compare.rechub.models import RechubPeer
from dmmp_rec.compare.rechub.recipes import RechubRecipe
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.loader import loader_for_split

MIN_INBATCH_ROWS = 2  # torch-rechub's in-batch sampler needs a negative per positive


def optimizer_setup(peer: RechubPeer, cfg: DmmpConfig) -> tuple[Callable[..., Any], dict]:
    """(`optimizer_fn`, `optimizer_params`) for the trainers: Adam over every parameter (the
    documented recipes), or torchrec's RowWiseAdagrad on the embedding tables at
    `train.embedding_lr` plus AdamW on the rest at `train.dense_lr` (ours), combined by
    torchrec's CombinedOptimizer."""
    r = peer.recipe
    lr = cfg.train.dense_lr if r.lr is None else r.lr
    weight_decay = cfg.train.weight_decay if r.weight_decay is None else r.weight_decay
    if r.optimizer == "adam":
        return torch.optim.Adam, {"lr": lr, "weight_decay": weight_decay}
    model: nn.Module = peer.model
    table_ids = {id(p) for p in cast(nn.Module, model.embedding).parameters()}
    names = {id(p): n for n, p in model.named_parameters()}

    def build(params: Any, lr: float, weight_decay: float, embedding_lr: float) -> Any:
        params = list(params)
        tables = {names[id(p)]: p for p in params if id(p) in table_ids}
        dense = {names[id(p)]: p for p in params if id(p) not in table_ids}
        return CombinedOptimizer(
            [
                (
                    "tables",
                    KeyedOptimizerWrapper(tables, lambda ps: RowWiseAdagrad(ps, lr=embedding_lr)),
                ),
                (
                    "dense",
                    KeyedOptimizerWrapper(
                        dense, lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=weight_decay)
                    ),
                ),
            ]
        )

    return build, {"lr": lr, "weight_decay": weight_decay, "embedding_lr": cfg.train.embedding_lr}


def make_trainer(peer: RechubPeer, cfg: DmmpConfig, device: torch.device, out: Path) -> Any:
    """torch-rechub's trainer for the peer, with the recipe's optimiser."""
    optimizer_fn, optimizer_params = optimizer_setup(peer, cfg)
    common = {
        "optimizer_fn": optimizer_fn,
        "optimizer_params": optimizer_params,
        "n_epoch": 1,
        "device": str(device),
        "model_path": str(out),
    }
    if peer.kind == "dssm":
        # in-batch negatives, every other row of the batch (the trainer's default ratio)
        return MatchTrainer(
            peer.model, mode=0, in_batch_neg=True, sampler_seed=cfg.training_seed, **common
        )
    return MTLTrainer(peer.model, task_types=["classification"] * peer.task_count, **common)


class PeerBatches:
    """The peer's `(inputs, labels)` for `steps` of our batches; for DSSM only the clicked rows
    of each batch (`skipped` counts batches with fewer than two)."""

    def __init__(self, peer: RechubPeer, cfg: DmmpConfig, steps: int, batch_size: int) -> None:
        self.peer, self.cfg, self.steps, self.batch_size = peer, cfg, steps, batch_size
        self.skipped = 0
        self.rows = 0  # rows the trainer saw (DSSM: positives)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        run_cfg = copy.deepcopy(self.cfg)
        run_cfg.data.batch_size = self.batch_size
        loader = loader_for_split(run_cfg, "train", 0, 1)
        for batch in islice(loader.forever(), self.steps):
            inputs = self.peer.inputs(batch.features)
            if self.peer.kind != "dssm":
                self.rows += int(batch.click.numel())
                yield inputs, self.peer.labels(batch.click, batch.conversion)
                continue
            clicked = batch.click > 0
            n = int(clicked.sum())
            if n < MIN_INBATCH_ROWS:
                self.skipped += 1
                continue
            self.rows += n
            yield {k: v[clicked] for k, v in inputs.items()}, torch.ones(n)


def train_rechub(
    recipe: RechubRecipe | str,
    cfg: DmmpConfig,
    steps: int,
    batch_size: int,
    device: torch.device,
    out: str | Path,
) -> tuple[RechubPeer, dict[str, Any]]:
    """Train the peer of `recipe` (a recipe or its name, e.g. `rechub_ple`) for `steps` batches
    of `batch_size` rows; writes `<out>/summary.json` and the weights `<out>/model.pt`. Returns
    the trained peer (eval mode) and the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.training_seed)
    peer = RechubPeer(recipe, cfg)
    trainer = make_trainer(peer, cfg, device, out)
    batches = PeerBatches(peer, cfg, steps, batch_size)
    t0 = time.perf_counter()
    losses = trainer.train_one_epoch(batches)
    seconds = time.perf_counter() - t0
    peer.model.eval()
    torch.save(peer.model.state_dict(), out / "model.pt")
    summary = {
        "peer": f"torch-rechub {peer.kind}",
        "recipe": peer.recipe.name,
        "steps": steps,
        "batch_size": batch_size,
        "samples_trained": steps * batch_size,
        "rows_in_loss": batches.rows,
        "steps_skipped": batches.skipped,
        "seconds": round(seconds, 2),
        "samples_per_s": round(steps * batch_size / seconds, 1) if seconds > 0 else None,
        "final_epoch_loss": losses if isinstance(losses, list) else float(losses),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return peer, summary
