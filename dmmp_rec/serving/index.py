"""FAISS indexes over the item vectors: exact inner product (`inference.item_index`, shared with
evaluation), and HNSW tuned to a recall target.

Fused score = <query, item vector>, so retrieval is maximum inner-product search. Item vectors
[i_c, i_v] have a constant norm (each half is L2-normalised), so HNSW over inner product behaves
as well as over cosine. Its efSearch is the smallest of a ladder whose recall@k against the
exact index, on real user queries, reaches the target; the measured recall is reported, never
assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from dmmp_rec.inference.item_index import exact_index

__all__ = ["ApproxTuning", "exact_index", "hnsw_index", "recall_at_k", "tune_ef_search"]

HNSW_M = 32  # neighbours per node
HNSW_EF_CONSTRUCTION = 80
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class ApproxTuning:
    """What tuning measured: efSearch chosen, recall@k there, and the recall at each try."""

    ef_search: int
    recall: float
    k: int
    queries: int
    target: float
    tried: dict[int, float]

    @property
    def reached(self) -> bool:
        return self.recall >= self.target


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def hnsw_index(vectors: np.ndarray) -> faiss.IndexHNSWFlat:
    """An HNSW index (M 32, efConstruction 80) over inner product, holding `vectors`.

    Args:
        vectors (np.ndarray): item vectors, [N, D] (cast to contiguous float32).

    Returns:
        faiss.IndexHNSWFlat: ids are row numbers; efSearch is faiss's default until
        `tune_ef_search` sets it.
    """
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(_f32(vectors))
    return index


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx top-k & exact top-k| / k (ids -1 never count).

    Args:
        approx_ids (np.ndarray): the approximate index's ids, [Q, k].
        exact_ids (np.ndarray): the exact index's ids, [Q, k].

    Returns:
        float: recall@k in [0, 1].
    """
    hits = [
        len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist()))
        for a, e in zip(approx_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits) / exact_ids.shape[1])


def tune_ef_search(
    index: faiss.IndexHNSWFlat,
    exact: faiss.Index,
    queries: np.ndarray,
    k: int = 100,
    target: float = 0.95,
) -> ApproxTuning:
    """Set `index.hnsw.efSearch` to the smallest ladder value reaching the target recall@k.

    When none reaches it, the largest tried stays set (it has the best recall). Ladder values
    below k are raised to k (efSearch below k cannot return k).

    Args:
        index (faiss.IndexHNSWFlat): the index to tune (modified in place).
        exact (faiss.Index): the exact index over the same vectors (the truth).
        queries (np.ndarray): real user queries, [Q, D].
        k (int): the recall's cut-off (capped at the catalogue size); default 100.
        target (float): the recall@k to reach, in [0, 1]; default 0.95.

    Returns:
        ApproxTuning: efSearch chosen, the recall measured there and at each try.
    """
    queries = _f32(queries)
    k = min(k, exact.ntotal)
    _, truth = exact.search(queries, k)
    tried: dict[int, float] = {}
    for ef in sorted({max(ef, k) for ef in EF_LADDER}):  # efSearch below k cannot return k
        index.hnsw.efSearch = ef
        _, found = index.search(queries, k)
        tried[ef] = recall_at_k(found, truth)
        if tried[ef] >= target:
            break
    best = index.hnsw.efSearch
    return ApproxTuning(best, tried[best], k, len(queries), target, tried)
