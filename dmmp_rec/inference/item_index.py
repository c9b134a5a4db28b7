"""The exact maximum-inner-product index over the student's item vectors.

The fused score is <query, [i_c, i_v]>, so retrieval is one exact inner-product search. Evaluation
(full-corpus metrics) and serving (exact.faiss, and the reference HNSW is tuned against) both use
this one builder; it sits below both so neither imports the other.
"""

from __future__ import annotations

import faiss
import numpy as np


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_index(vectors: np.ndarray) -> faiss.Index:
    """The exact inner-product index over item vectors (row r = id r).

    Args:
        vectors: [n, D] item vectors.

    Returns:
        A faiss.IndexFlatIP holding the rows of `vectors`.
    """
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(_f32(vectors))
    return index


def search_top_k(item_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The k items of highest inner product for each query (exact, IndexFlatIP).

    Args:
        item_vectors: [n, D] item vectors (row r = item row r).
        queries: [m, D] query vectors.
        k: how many items per query.

    Returns:
        [m, k] int64 item rows, best first.
    """
    index = exact_index(item_vectors)
    if len(queries) == 0:
        return np.empty((0, k), dtype=np.int64)
    _, rows = index.search(_f32(queries), k)
    return rows.astype(np.int64)
