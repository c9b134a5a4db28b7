"""Top-K math of the evaluation against brute force, sklearn and FAISS."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from dmmp_rec.eval import ranking
from dmmp_rec.inference.item_index import search_top_k


def _brute_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    # a stable sort of -score puts the lower index first among ties
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_matches_a_full_stable_sort_with_and_without_ties(k: int) -> None:
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(30, 40))
    tied = rng.integers(0, 4, size=(30, 40)).astype(np.float64)  # many ties
    for scores in (distinct, tied):
        np.testing.assert_array_equal(ranking.top_k(scores, k), _brute_top_k(scores, k))


def test_top_k_rejects_k_outside_the_corpus() -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        ranking.top_k(np.zeros((2, 4)), 5)


def test_exact_faiss_search_equals_brute_force_top_k() -> None:
    rng = np.random.default_rng(1)
    items = rng.normal(size=(500, 12)).astype(np.float32)
    queries = rng.normal(size=(40, 12)).astype(np.float32)
    got = search_top_k(items, queries, 25)
    want = _brute_top_k(queries.astype(np.float64) @ items.T.astype(np.float64), 25)
    np.testing.assert_array_equal(got, want)


def test_recall_counts_hits_against_python_sets() -> None:
    rng = np.random.default_rng(2)
    users = np.array([3, 7, 11, 12])
    topk = np.stack([rng.permutation(50)[:10] for _ in users])
    rel = {3: {topk[0, 0], topk[0, 9], 49 if 49 not in topk[0] else 48}, 7: set(), 11: {1, 2}}
    rel[12] = {int(topk[3, 4])}
    pairs = [(u, i) for u, items in rel.items() for i in items]
    pairs += [(3, int(topk[0, 0]))]  # a duplicate pair (clicked twice) counts once
    rel_u = np.array([p[0] for p in pairs])
    rel_i = np.array([p[1] for p in pairs])
    hit = ranking.hits(topk, users, rel_u, rel_i)
    n_rel = np.array([len(rel[u]) for u in users])
    ks = [1, 5, 10]
    got = ranking.recall_at(hit, n_rel, ks)
    for r, u in enumerate(users):
        for j, k in enumerate(ks):
            if not rel[u]:
                assert np.isnan(got[r, j])
            else:
                want = len(set(topk[r, :k].tolist()) & rel[u]) / len(rel[u])
                assert got[r, j] == pytest.approx(want)
    assert got[0].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    # users without relevant items are left out of the mean
    means = ranking.user_mean(got)
    assert means[2] == pytest.approx(np.mean([2 / 3, got[2, 2], 1.0]))


def test_ndcg_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    gains = rng.random((20, 60))  # true pCTCVR of every item, per user
    scores = gains + rng.normal(scale=0.3, size=gains.shape)  # a noisy model
    ks = [1, 5, 20]
    retrieved = ranking.top_k(scores, 20)
    ideal = ranking.top_k(gains, 20)
    got = ranking.ndcg_at(
        np.take_along_axis(gains, retrieved, 1), np.take_along_axis(gains, ideal, 1), ks
    )
    for j, k in enumerate(ks):
        per_user = [ndcg_score(gains[r : r + 1], scores[r : r + 1], k=k) for r in range(20)]
        np.testing.assert_allclose(got[:, j], per_user, rtol=1e-10)
    assert np.all(got[:, 0] < 1.0 + 1e-12) and got[:, 2].mean() < 1.0


def test_share_and_expected_ratio_against_loops() -> None:
    rng = np.random.default_rng(4)
    values = rng.random((6, 30))
    best = np.sort(values, axis=1)[:, ::-1]
    order = rng.permuted(np.tile(np.arange(30), (6, 1)), axis=1)
    got_values = np.take_along_axis(values, order, 1)
    bait = rng.random(30) < 0.3
    ks = [3, 10]
    share = ranking.mean_at(bait[order], ks)
    ratio = ranking.sum_ratio_at(got_values, best, ks)
    for r in range(6):
        for j, k in enumerate(ks):
            assert share[r, j] == pytest.approx(sum(bait[i] for i in order[r, :k]) / k)
            want = sum(values[r, i] for i in order[r, :k]) / sum(sorted(values[r])[::-1][:k])
            assert ratio[r, j] == pytest.approx(want)
    assert np.all(ratio <= 1.0 + 1e-12)


def test_user_mean_of_no_users_is_nan() -> None:
    assert all(np.isnan(ranking.user_mean(np.empty((0, 2)))))
    assert np.isnan(ranking.user_mean(np.array([[np.nan], [np.nan]]))[0])
