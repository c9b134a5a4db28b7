"""A briefly trained DMMP for the inference and retrieval benchmarks, and its catalogues as KJTs.

Training goes through the real trainer (`dmmp-rec train`, one process); its summary's samples/s
is recorded too. The checkpoint (saved sharded by DCP) loads into an unsharded model: DCP
reassembles full tables, so serving-style code runs without a process group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed.checkpoint as dcp
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import DmmpConfig
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE
from dmmp_rec.distributed.runtime import checkpoint_dir
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.factory import build_model


def train_briefly(
    config: str, overrides: list[str], out: Path, steps: int, threads: int = 1
) -> dict[str, Any]:
    """Run `dmmp-rec train` for `steps` steps into `out`; returns its summary.json.

    `threads` OpenMP threads: on cores shared with other jobs, 2 threads made the trainer
    several times slower than 1 (threads waiting for a descheduled sibling)."""
    cmd = [sys.executable, "-m", "dmmp_rec.cli", "train", "--config", config, *overrides]
    cmd += [f"train.max_steps={steps}", f"train.out={out}", "train.eval_batches=0"]
    cmd += ["train.select_best_on=null"]
    cmd += [f"train.checkpoint_every={steps}", f"train.log_every={max(1, steps // 4)}"]
    print("  $", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return json.loads((out / "summary.json").read_text())


def load_unsharded(cfg: DmmpConfig, run_dir: str | Path) -> DMMPModel:
    """The trained model as a plain (unsharded) module in eval mode."""
    model = build_model(cfg, device="cpu")
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(checkpoint_dir(run_dir)), no_dist=True)
    model.load_state_dict(state["model"])
    return model.eval()


def catalogue_kjts(
    path: Path, specs: list[FeatureSpec], rows: np.ndarray, batch: int
) -> list[KeyedJaggedTensor]:
    """KJTs of `specs` (one group) for `rows` of items/users.parquet, `batch` rows each."""
    table = pq.read_table(path, columns=[s.name for s in specs])
    out = []
    for lo in range(0, len(rows), batch):
        idx = rows[lo : lo + batch]
        values, lengths = [], []
        for spec in specs:
            col = table.column(spec.name).take(idx).combine_chunks()
            if spec.multi_valued:
                offsets = col.offsets.to_numpy()
                lengths.append(np.diff(offsets).astype(np.int32))
                values.append(col.values.to_numpy()[offsets[0] : offsets[-1]].astype(np.int64))
            else:
                values.append(col.to_numpy().astype(np.int64))
                lengths.append(np.ones(len(idx), np.int32))
        # ids beyond a table fold by hash, as the loader's default policy does
        for i, spec in enumerate(specs):
            values[i] = np.where(
                values[i] < spec.cardinality, values[i], values[i] % spec.cardinality
            )
        out.append(
            KeyedJaggedTensor(
                keys=[s.name for s in specs],
                values=torch.from_numpy(np.concatenate(values)),
                lengths=torch.from_numpy(np.concatenate(lengths)),
            )
        )
    return out


def item_kjts(cfg: DmmpConfig, n: int, batch: int) -> list[KeyedJaggedTensor]:
    path = Path(cfg.data.path) / ITEMS_FILE
    return catalogue_kjts(path, cfg.features.group("item"), np.arange(n), batch)


def user_kjts(cfg: DmmpConfig, rows: np.ndarray, batch: int) -> list[KeyedJaggedTensor]:
    path = Path(cfg.data.path) / USERS_FILE
    specs = cfg.features.group("user") + cfg.features.group("context")
    return catalogue_kjts(path, specs, rows, batch)


@torch.no_grad()
def encode(fn: Any, kjts: list[KeyedJaggedTensor], every: int = 50) -> np.ndarray:
    """Stack `fn(kjt)` over the batches, printing progress every `every` batches."""
    out = []
    for i, kjt in enumerate(kjts):
        out.append(fn(kjt).float().numpy())
        if (i + 1) % every == 0:
            print(f"  encoded {i + 1}/{len(kjts)} batches", flush=True)
    return np.concatenate(out).astype(np.float32)
