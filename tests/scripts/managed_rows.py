"""The rows that managed-collision features give fixed raw ids, on however many ranks this runs.

    python managed_rows.py train CONFIG STEPS OUT.json [overrides...]
        train STEPS steps through TrainPipelineSparseDist (each rank on its own batches), then
        write every rank's remapping state digest and the rows of every rank's first-batch ids
    python managed_rows.py load CONFIG CHECKPOINT OUT.json [overrides...]
        load a checkpoint (DCP reshards it) and write the rows of the train split's first ids

Rows are looked up without admitting anything (`ManagedIds.rows`), so they are the lookups
that validation, export and serving make.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from dmmp_rec.config import DmmpConfig, load_config
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.data.schema import split_files
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.optim import combined_optimizer
from dmmp_rec.distributed.runtime import build_sharded_model, load_for_inference
from dmmp_rec.model.managed_ids import ManagedIds

PROBES = 3000


def _rows(managed: ManagedIds, probes: dict[str, np.ndarray]) -> dict[str, list[int]]:
    return {n: managed.rows(n, torch.from_numpy(v)).tolist() for n, v in probes.items()}


def _digest(managed: ManagedIds) -> dict[str, float]:
    return {k: float(v.double().sum()) for k, v in managed.state_dict().items()}


def _train(cfg: DmmpConfig, steps: int) -> dict:
    env = init_distributed("cpu")
    dmp = build_sharded_model(cfg, env)
    optimizer, _ = combined_optimizer(dmp, cfg.train)
    loader = loader_for_split(cfg, "train", env.rank, env.world_size)
    batches = iter(loader.forever())
    first = next(batches)

    def stream():  # the first batch is trained on too, and its ids are probed below
        yield first
        yield from batches

    pipeline = TrainPipelineSparseDist(dmp, optimizer, env.device, execute_all_batches=True)
    it = stream()
    for _ in range(steps):
        pipeline.progress(it)
    managed = dmp.module.sparse.managed
    jts = first.features.to_dict()
    mine = {"seen": {n: jts[n].values().tolist() for n in managed.feature_names}}
    every: list = [None] * env.world_size
    dist.all_gather_object(every, mine)
    seen = {n: np.array([i for m in every for i in m["seen"][n]]) for n in managed.feature_names}
    return {"digest": _digest(managed), "rows": _rows(managed, seen), "seen": mine["seen"]}


def _load(cfg: DmmpConfig, checkpoint: str) -> dict:
    env = init_distributed("cpu")
    dmp = load_for_inference(cfg, env, checkpoint)
    managed = dmp.module.sparse.managed
    table = pq.read_table(split_files(cfg.data.path, "train")[0])
    probes = {}
    for n in managed.feature_names:
        col = table.column(n).combine_chunks()
        values = col.values if hasattr(col, "offsets") else col
        probes[n] = values.to_numpy()[:PROBES].astype(np.int64)
    return {"digest": _digest(managed), "rows": _rows(managed, probes)}


def main() -> None:
    mode, config, arg, out, *overrides = sys.argv[1:]
    cfg = load_config(config, overrides)
    mine = _train(cfg, int(arg)) if mode == "train" else _load(cfg, arg)
    every: list = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(every, f)
    shutdown()


if __name__ == "__main__":
    main()
