"""One table's training step, kernel against kernel: what bounds the embedding-heavy workload.

    python benchmarks/embedding_kernels.py [--rows 50000 5000000] [--dims 16 64]

One mean-pooled table, batches of 1024 bags of 25-75 Zipf ids (the benchmark's sequences),
forward + backward + optimiser on 1 thread: fbgemm's fused kernel (row-wise Adagrad applied
inside the backward, what DMMP's sharded tables run) against `nn.EmbeddingBag(sparse=True)` +
`torch.optim.Adagrad` (the replica). CPU ms per batch, median of 5 batches after 2 of warm-up,
and ns per looked-up id. A small table stays in cache; a large one makes every row a miss.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.sparse_batches import zipf_ids  # noqa: E402

BATCH, HIST_LEN, ZIPF = 1024, 50, 0.9


def _batches(rows: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        n = rng.integers(HIST_LEN // 2, HIST_LEN + HIST_LEN // 2 + 1, BATCH)
        ids = zipf_ids(rng, rows, int(n.sum()), ZIPF)
        offsets = np.concatenate([[0], np.cumsum(n)])
        out.append((torch.from_numpy(ids), torch.from_numpy(offsets)))
    return out


def fused_step(rows: int, dim: int) -> Any:
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        ComputeDevice,
        OptimType,
        SplitTableBatchedEmbeddingBagsCodegen,
    )

    tbe = SplitTableBatchedEmbeddingBagsCodegen(
        [(rows, dim, EmbeddingLocation.HOST, ComputeDevice.CPU)],
        optimizer=OptimType.EXACT_ROWWISE_ADAGRAD,
        pooling_mode=PoolingMode.MEAN,
        learning_rate=0.05,
    )

    def step(ids: torch.Tensor, offsets: torch.Tensor) -> None:
        out = tbe(ids, offsets)
        out.backward(torch.ones_like(out))

    return step


def sparse_step(rows: int, dim: int) -> Any:
    bag = torch.nn.EmbeddingBag(rows, dim, mode="mean", sparse=True, include_last_offset=True)
    opt = torch.optim.Adagrad(bag.parameters(), lr=0.05)

    def step(ids: torch.Tensor, offsets: torch.Tensor) -> None:
        opt.zero_grad()
        out = bag(ids, offsets)
        out.backward(torch.ones_like(out))
        opt.step()

    return step


def measure(rows: int, dim: int) -> dict[str, Any]:
    batches = _batches(rows, 7)
    lookups = statistics.mean(len(ids) for ids, _ in batches)
    res: dict[str, Any] = {"rows": rows, "dim": dim, "lookups_per_batch": round(lookups)}
    for name, make in (
        ("fbgemm_fused_rowwise_adagrad", fused_step),
        ("sparse_adagrad", sparse_step),
    ):
        step = make(rows, dim)
        times = []
        for i, (ids, offsets) in enumerate(batches):
            t0 = time.process_time()
            step(ids, offsets)
            if i >= 2:
                times.append(time.process_time() - t0)
        ms = statistics.median(times) * 1e3
        res[name] = {"cpu_ms": round(ms, 1), "ns_per_lookup": round(ms * 1e6 / lookups)}
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[50_000, 5_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[16, 64])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for rows in args.rows:
        for dim in args.dims:
            print(measure(rows, dim), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
