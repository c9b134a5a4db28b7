"""The machine's memory bandwidth (a STREAM-like copy) and the embedding-bound training limit.

Embedding training on CPU moves rows, it does little arithmetic: per sample every lookup reads
a row (forward), the backward pass writes a row gradient and the fused row-wise Adagrad reads
and writes the row and its one-float state. Bytes per sample over the copy bandwidth gives the
samples/s no implementation can beat on this machine; the share of it that training reaches is
the honest figure of how close to the hardware we run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dmmp_rec.config import DmmpConfig

FLOAT = 4


def copy_bandwidth_gbs(mbytes: int = 512, reps: int = 5) -> list[float]:
    """GB/s (1e9) of `np.copyto` over `mbytes` MB, counting read + write, per repetition."""
    n = mbytes * 1_000_000 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up: fault the pages in
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        out.append(2 * src.nbytes / (time.perf_counter() - t0) / 1e9)
    return out


def bytes_per_sample(cfg: DmmpConfig, pooling_factors: dict[str, float]) -> dict[str, Any]:
    """Bytes moved per training sample by lookups, gradients and row-wise Adagrad.

    Per looked-up row of dim d: forward reads d floats; backward writes the pooled gradient into
    the row's gradient slot (d floats) and the fused optimiser reads it, reads and writes the
    row (2d) and reads and writes its one-float state (2): 5d + 2 floats, plus the ids (8 bytes).
    The pooled output and its gradient (d floats each per feature) are counted once each.
    A lower bound: caches, duplicates within a batch and index bookkeeping are ignored.
    """
    per_table = {}
    total = 0.0
    for spec in cfg.features.all:
        rows = pooling_factors.get(spec.name, 1.0)
        lookup = rows * (spec.dim * FLOAT + 8)
        update = rows * (4 * spec.dim + 2) * FLOAT
        pooled = 2 * spec.dim * FLOAT
        b = lookup + update + pooled
        per_table[spec.name] = {"rows_per_sample": round(rows, 2), "bytes": round(b, 1)}
        total += b
    return {"bytes_per_sample": round(total, 1), "tables": per_table}


def mean_pooling_factors(batches: list[Any]) -> dict[str, float]:
    """Mean ids per sample of each feature over some batches (KJT lengths)."""
    sums: dict[str, float] = {}
    n = 0
    for b in batches:
        kjt = b.features
        for name, length in zip(kjt.keys(), kjt.length_per_key(), strict=True):
            sums[name] = sums.get(name, 0.0) + float(length)
        n += b.size
    return {k: v / max(n, 1) for k, v in sums.items()}
