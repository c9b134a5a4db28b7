"""FAISS retrieval over trained item vectors: exact (IndexFlatIP) and approximate (IVF).

Per catalogue size: p50 / p99 of single-query search, queries/s at batch 64, and recall@100 of
the approximate index against the exact one on the same queries. The IVF probe count is the
smallest of a ladder that reaches the recall target on a tuning set of queries disjoint from the
measured ones. IVF, not HNSW: building an HNSW graph over 1M vectors takes many minutes on 2
shared cores (200k took 138 s here), IVF trains k-means on a sample and adds 1M in seconds.
"""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from benchmarks.common import load_now, percentiles_ms, summarise
from dmmp_rec.inference.item_index import exact_index
from dmmp_rec.serving.index import recall_at_k

K = 100
NPROBE_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def ivf_index(vectors: np.ndarray, nlist: int, seed: int = 0) -> faiss.IndexIVFFlat:
    d = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), min(len(vectors), 64 * nlist), replace=False)]
    index.train(sample)
    index.add(vectors)
    return index


def tune_nprobe(
    index: faiss.IndexIVFFlat, exact: faiss.Index, queries: np.ndarray, target: float
) -> tuple[int, float]:
    """The smallest probe count of NPROBE_LADDER whose recall@K reaches `target`."""
    _, truth = exact.search(queries, K)
    recall = 0.0
    for nprobe in NPROBE_LADDER:
        if nprobe > index.nlist:
            break
        index.nprobe = nprobe
        _, got = index.search(queries, K)
        recall = recall_at_k(got, truth)
        if recall >= target:
            return nprobe, recall
    return index.nprobe, recall


def _single_query_ms(index: faiss.Index, queries: np.ndarray) -> dict[str, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - t0)
    return percentiles_ms(times)


def _batch_qps(index: faiss.Index, queries: np.ndarray, batch: int, reps: int) -> dict[str, Any]:
    rates = []
    for r in range(reps):
        q = np.roll(queries, r * batch, axis=0)[:batch]
        t0 = time.perf_counter()
        index.search(q, K)
        rates.append(batch / (time.perf_counter() - t0))
    return summarise(rates, 1)


def bench_retrieval(
    items: np.ndarray,
    queries: np.ndarray,
    tune_queries: np.ndarray,
    target_recall: float = 0.95,
    batch: int = 64,
    reps: int = 5,
) -> dict[str, Any]:
    """Exact vs IVF over `items` with `queries` ([n, vector_dim] float32, inner product)."""
    n = len(items)
    nlist = int(max(16, min(4096, 4 * np.sqrt(n))))
    t0 = time.perf_counter()
    exact = exact_index(items)
    exact_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx = ivf_index(items, nlist)
    approx_build = time.perf_counter() - t0
    nprobe, tune_recall = tune_nprobe(approx, exact, tune_queries, target_recall)
    approx.nprobe = nprobe
    _, truth = exact.search(queries, K)
    _, got = approx.search(queries, K)
    out = {
        "items": n,
        "dim": int(items.shape[1]),
        "k": K,
        "faiss_threads": faiss.omp_get_max_threads(),
        "exact": {
            "index": "IndexFlatIP",
            "build_s": round(exact_build, 2),
            "single_query": _single_query_ms(exact, queries),
            "qps_batch": _batch_qps(exact, queries, batch, reps),
        },
        "approx": {
            "index": f"IndexIVFFlat(nlist={nlist}, nprobe={nprobe})",
            "build_s": round(approx_build, 2),
            "tuning_recall": round(tune_recall, 4),
            "recall_at_100": round(recall_at_k(got, truth), 4),
            "single_query": _single_query_ms(approx, queries),
            "qps_batch": _batch_qps(approx, queries, batch, reps),
        },
        "batch": batch,
        "loadavg": load_now(),
    }
    return out
