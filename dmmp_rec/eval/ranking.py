"""Top-K ranking metrics per user, vectorised over a block of users (plain numpy).

Every function returns one value per user (rows) and K (columns) so that ranks can compute
their users' values and the mean is taken once over all users, whatever the world size.
Conventions: top-K lists are sorted best first; ties in scores go to the lower index (as a
stable sort would); a user without relevant items has recall NaN and is left out of means.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices [n, k] of the k highest scores of each row of `scores` [n, m], best first."""
    scores = np.asarray(scores)
    n, m = scores.shape
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    # argpartition finds a candidate set; the stable sort of the candidates by (-score, index)
    # makes the order and the choice among ties deterministic (lower index first)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        # all items tied with the k-th score are candidates, so the lowest indices win
        cand_mask = scores >= kth
        out = np.empty((n, k), dtype=np.int64)
        for r in range(n):
            cand = np.flatnonzero(cand_mask[r])
            order = np.lexsort((cand, -scores[r, cand]))
            out[r] = cand[order[:k]]
        return out
    return np.lexsort((np.broadcast_to(np.arange(m), (n, m)), -scores), axis=1)[:, :k]


def hits(topk: np.ndarray, users: np.ndarray, rel_users: np.ndarray, rel_items: np.ndarray):
    """Boolean [n, K]: whether topk[r, j] is relevant to user `users[r]`, where the relevant
    pairs are (rel_users[p], rel_items[p]) (duplicates allowed)."""
    topk = np.asarray(topk, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    if topk.size == 0:
        return np.zeros(topk.shape, dtype=bool)
    width = int(max(topk.max(), np.max(rel_items, initial=0))) + 1
    keys = users[:, None] * width + topk
    rel = np.asarray(rel_users, np.int64) * width + np.asarray(rel_items, np.int64)
    return np.isin(keys, rel)


def recall_at(hit: np.ndarray, num_relevant: np.ndarray, ks: list[int]) -> np.ndarray:
    """[n, len(ks)]: |top-K ∩ relevant| / |relevant|; NaN for users with no relevant item.

    `hit` must come from a top-K list without repeated items (as any ranking has)."""
    num_relevant = np.asarray(num_relevant, dtype=np.float64)
    found = np.cumsum(hit, axis=1)
    out = np.stack([found[:, k - 1] for k in ks], axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / num_relevant[:, None]
    out[num_relevant == 0] = np.nan
    return out


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at(gains: np.ndarray, ideal_gains: np.ndarray, ks: list[int]) -> np.ndarray:
    """[n, len(ks)]: DCG of the retrieved gains over DCG of the ideal ones (both [n, >=K], best
    first), with the log2(rank + 1) discount; NaN where the ideal DCG is 0."""
    kmax = max(ks)
    d = _discounts(kmax)
    dcg = np.cumsum(np.asarray(gains, np.float64)[:, :kmax] * d, axis=1)
    idcg = np.cumsum(np.asarray(ideal_gains, np.float64)[:, :kmax] * d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([dcg[:, k - 1] / idcg[:, k - 1] for k in ks], axis=1)
    out[np.stack([idcg[:, k - 1] for k in ks], axis=1) <= 0] = np.nan
    return out


def mean_at(values: np.ndarray, ks: list[int]) -> np.ndarray:
    """[n, len(ks)]: the mean of the first K values of each row (e.g. the click-bait share)."""
    csum = np.cumsum(np.asarray(values, np.float64), axis=1)
    return np.stack([csum[:, k - 1] / k for k in ks], axis=1)


def sum_at(values: np.ndarray, ks: list[int]) -> np.ndarray:
    """[n, len(ks)]: the sum of the first K values of each row (expected clicks@K as a count)."""
    csum = np.cumsum(np.asarray(values, np.float64), axis=1)
    return np.stack([csum[:, k - 1] for k in ks], axis=1)


def user_sum(per_user: np.ndarray) -> list[float]:
    """Column sums over users, ignoring NaN: a platform total over the users given."""
    per_user = np.asarray(per_user, dtype=np.float64)
    if per_user.ndim != 2:
        return []
    return [float(x) for x in np.nansum(per_user, axis=0)]


def sum_ratio_at(values: np.ndarray, best: np.ndarray, ks: list[int]) -> np.ndarray:
    """[n, len(ks)]: sum of the first K `values` over the sum of the first K `best` (expected
    conversions@K of a ranker over the oracle's); NaN where the oracle's sum is 0."""
    a = np.cumsum(np.asarray(values, np.float64), axis=1)
    b = np.cumsum(np.asarray(best, np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([a[:, k - 1] / b[:, k - 1] for k in ks], axis=1)
    out[np.stack([b[:, k - 1] for k in ks], axis=1) <= 0] = np.nan
    return out


def user_mean(per_user: np.ndarray) -> list[float]:
    """Column means over users, ignoring NaN (users without relevant items); NaN if none."""
    per_user = np.asarray(per_user, dtype=np.float64)
    if per_user.size == 0:
        return [float("nan")] * (per_user.shape[1] if per_user.ndim == 2 else 0)
    counts = np.sum(~np.isnan(per_user), axis=0)
    sums = np.nansum(per_user, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(s / c) if c else float("nan") for s, c in zip(sums, counts, strict=True)]
