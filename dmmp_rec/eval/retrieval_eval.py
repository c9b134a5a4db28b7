"""Full-corpus retrieval of the student for every user of a split, through an exact FAISS index.

Relevant items of a user are the items they clicked (or converted on) in the split; Recall@K is
averaged over users with at least one relevant item. On the synthetic world the ground truth
also scores a seeded sample of those users against every item, for NDCG@K with the true pCTCVR
as gains, the click-bait share of the top K, and expected conversions (clicks)@K over the
oracle's. Reference rankers needing no model frame the numbers: popularity (train clicks),
oracle pCTR and oracle pCTCVR. Every rank searches and scores a contiguous share of the users;
the per-user values are gathered in user order and averaged once, so one process and several
give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.console.progress import track
from dmmp_rec.data.id_policy import fold_ids
from dmmp_rec.data.schema import CLICK, CONVERSION, split_files
from dmmp_rec.data.world import GroundTruth, sigmoid
from dmmp_rec.eval import ranking
from dmmp_rec.eval.teacher_eval import gather_rows, id_features
from dmmp_rec.eval.vectors import (
    RetrievalModel,
    encode_items,
    encode_users,
    item_side,
    rank_and_world,
    share_bounds,
    user_side,
)

ITEMS_FILE = "items.parquet"  # written by dmmp-rec synth (dmmp_rec.data.synthetic)
USERS_FILE = "users.parquet"
_ORACLE_BLOCK = 64  # users scored against the whole corpus at once
ORACLE_RANKERS = ("oracle_pctr", "oracle_pctcvr")
SAMPLE_METRICS = (
    "recall_click",
    "recall_conversion",
    "ndcg_pctcvr",
    "bait_share",
    "exp_conversions_ratio",
    "exp_clicks_ratio",
)


@dataclass
class RetrievalOptions:
    ks: list[int] = field(default_factory=lambda: [10, 50, 100])
    oracle_users: int = 2000  # seeded sample of users for the ground-truth metrics
    split: str = "test"
    batch_size: int = 4096  # rows per encoding call
    seed: int = 0

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"K values must be >= 1, got {self.ks}")
        if self.batch_size < 1:
            raise ValueError(f"encoding batch size must be >= 1, got {self.batch_size}")
        if self.oracle_users < 0:
            raise ValueError(f"oracle users must be >= 0, got {self.oracle_users}")


@dataclass
class Catalogue:
    """Feature rows of the items to index and of the users to query, with their ids."""

    items: pa.Table
    item_ids: np.ndarray  # id of each item row (the item id feature)
    users: pa.Table
    user_ids: np.ndarray
    source: str


def _ids(table: pa.Table, features: FeaturesConfig, name: str, where: str) -> np.ndarray:
    ids = table.column(name).to_numpy().astype(np.int64)
    folded, _ = fold_ids(ids, features.by_name(name), f"{where}: column {name!r}")
    return np.asarray(folded, dtype=np.int64)


def _first_rows(table: pa.Table, ids: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    unique, first = np.unique(ids, return_index=True)
    return table.take(pa.array(first)), unique


def load_catalogue(cfg: DmmpConfig, split: str = "test") -> Catalogue:
    """items.parquet / users.parquet of the world, or, for data without them (Ali-CCP), each
    id's first row in `split` (its features as logged there)."""
    root = Path(cfg.data.path)
    user_key, item_key = id_features(cfg.features)
    item_cols = [s.name for s in item_side(cfg.features)]
    user_cols = [s.name for s in user_side(cfg.features)]
    if (root / ITEMS_FILE).exists() and (root / USERS_FILE).exists():
        items = pq.read_table(root / ITEMS_FILE, columns=item_cols)
        users = pq.read_table(root / USERS_FILE, columns=user_cols)
        return Catalogue(
            items,
            _ids(items, cfg.features, item_key, str(root / ITEMS_FILE)),
            users,
            _ids(users, cfg.features, user_key, str(root / USERS_FILE)),
            f"{ITEMS_FILE} + {USERS_FILE}",
        )
    files = split_files(root, split)
    rows = pq.read_table(files, columns=sorted(set(item_cols + user_cols)))
    items, item_ids = _first_rows(rows.select(item_cols), _ids(rows, cfg.features, item_key, split))
    users, user_ids = _first_rows(rows.select(user_cols), _ids(rows, cfg.features, user_key, split))
    return Catalogue(items, item_ids, users, user_ids, f"first rows of the {split} split")


@dataclass
class Interactions:
    """Users of a split and their clicked / converted items (unique pairs)."""

    users: np.ndarray  # sorted unique user ids
    click_users: np.ndarray
    click_items: np.ndarray
    conv_users: np.ndarray
    conv_items: np.ndarray

    def counts(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relevant clicked and converted items per user of `users`."""
        return (_count(self.click_users, users), _count(self.conv_users, users))


def _count(pair_users: np.ndarray, users: np.ndarray) -> np.ndarray:
    u, c = np.unique(pair_users, return_counts=True)
    pos = np.searchsorted(u, users)
    found = pos < len(u)
    found[found] = u[pos[found]] == users[found]
    out = np.zeros(len(users), dtype=np.int64)
    out[found] = c[pos[found]]
    return out


def _unique_pairs(u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if u.size == 0:
        return u, i
    pairs = np.unique(np.stack([u, i], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def split_interactions(cfg: DmmpConfig, split: str) -> Interactions:
    user_key, item_key = id_features(cfg.features)
    files = split_files(cfg.data.path, split)
    t = pq.read_table(files, columns=[user_key, item_key, CLICK, CONVERSION])
    u = _ids(t, cfg.features, user_key, split)
    i = _ids(t, cfg.features, item_key, split)
    click = t.column(CLICK).to_numpy() > 0
    conv = t.column(CONVERSION).to_numpy() > 0
    cu, ci = _unique_pairs(u[click], i[click])
    vu, vi = _unique_pairs(u[conv], i[conv])
    return Interactions(np.unique(u), cu, ci, vu, vi)


def train_click_counts(cfg: DmmpConfig, item_ids: np.ndarray) -> np.ndarray:
    """Clicks of each catalogue item in the train split (the popularity reference)."""
    _, item_key = id_features(cfg.features)
    t = pq.read_table(split_files(cfg.data.path, "train"), columns=[item_key, CLICK])
    ids = _ids(t, cfg.features, item_key, "train")
    clicked = ids[t.column(CLICK).to_numpy() > 0]
    size = int(max(clicked.max(initial=0), item_ids.max(initial=0))) + 1
    return np.bincount(clicked, minlength=size)[item_ids]


def search_top_k(item_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows [n, k] of the k items of highest inner product per query (exact, IndexFlatIP)."""
    import faiss

    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(np.ascontiguousarray(item_vectors, dtype=np.float32))
    if len(queries) == 0:
        return np.empty((0, k), dtype=np.int64)
    _, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows.astype(np.int64)


def _recalls(
    prefix: str,
    rows: np.ndarray,
    users: np.ndarray,
    cat: Catalogue,
    inter: Interactions,
    ks: list[int],
) -> dict[str, np.ndarray]:
    item_ids = cat.item_ids[rows]
    n_click, n_conv = inter.counts(users)
    hit_c = ranking.hits(item_ids, users, inter.click_users, inter.click_items)
    hit_v = ranking.hits(item_ids, users, inter.conv_users, inter.conv_items)
    return {
        f"{prefix}/recall_click": ranking.recall_at(hit_c, n_click, ks),
        f"{prefix}/recall_conversion": ranking.recall_at(hit_v, n_conv, ks),
    }


def true_scores(
    truth: GroundTruth, users: np.ndarray, item_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True pCTR and pCTCVR [len(users), len(item_ids)] at the catalogue's hour: the formula of
    `GroundTruth.score_all_items` as one matrix product per block of users (one user at a time
    is about 7x slower); tested equal to it."""
    c = truth.coef
    u = np.asarray(users, dtype=np.int64)
    ctr = sigmoid(
        c[0] * (truth.user_vec[u] @ truth.item_vec[item_ids].T)
        + c[1] * truth.attract[item_ids]
        + truth.hour_effect[truth.eval_hour]
        + c[2]
    )
    cvr = sigmoid(
        c[3] * (truth.user_vec2[u] @ truth.item_vec2[item_ids].T)
        + c[4] * truth.quality[item_ids]
        + truth.propensity[u, None]
        + c[5]
    )
    return ctr, ctr * cvr


def _oracle_block(
    users: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
) -> dict[str, np.ndarray]:
    """Per-user ground-truth metrics of every ranker for one block of users."""
    kmax = max(ks)
    ctr, ctcvr = true_scores(truth, users, cat.item_ids)
    rankers = {
        **rankers,
        "oracle_pctr": ranking.top_k(ctr, kmax),
        "oracle_pctcvr": ranking.top_k(ctcvr, kmax),
    }
    best_ctcvr = np.take_along_axis(ctcvr, rankers["oracle_pctcvr"], axis=1)
    best_ctr = np.take_along_axis(ctr, rankers["oracle_pctr"], axis=1)
    bait = truth.is_bait[cat.item_ids]
    out = {}
    for name, rows in rankers.items():
        got_ctcvr = np.take_along_axis(ctcvr, rows, axis=1)
        got_ctr = np.take_along_axis(ctr, rows, axis=1)
        out.update(_recalls(f"{name}/sample", rows, users, cat, inter, ks))
        out[f"{name}/sample/ndcg_pctcvr"] = ranking.ndcg_at(got_ctcvr, best_ctcvr, ks)
        out[f"{name}/sample/bait_share"] = ranking.mean_at(bait[rows], ks)
        out[f"{name}/sample/exp_conversions_ratio"] = ranking.sum_ratio_at(
            got_ctcvr, best_ctcvr, ks
        )
        out[f"{name}/sample/exp_clicks_ratio"] = ranking.sum_ratio_at(got_ctr, best_ctr, ks)
    return out


def _oracle_metrics(
    users: np.ndarray,
    sample: np.ndarray,
    rankers: dict[str, np.ndarray],
    cat: Catalogue,
    inter: Interactions,
    truth: GroundTruth,
    ks: list[int],
    show: bool,
) -> dict[str, np.ndarray]:
    """Per-user ground-truth metrics of `users[sample]`, in blocks; every key is present (with
    no rows) even when this rank has no sample user, so the gather lines up."""
    parts: dict[str, list[np.ndarray]] = {
        f"{name}/sample/{metric}": [np.empty((0, len(ks)))]
        for name in (*rankers, *ORACLE_RANKERS)
        for metric in SAMPLE_METRICS
    }
    blocks = track(range(0, len(sample), _ORACLE_BLOCK), "oracle scoring", "block", show)
    for s in blocks:
        b = sample[s : s + _ORACLE_BLOCK]
        block_rankers = {name: rows[b] for name, rows in rankers.items()}
        for key, v in _oracle_block(users[b], block_rankers, cat, inter, truth, ks).items():
            parts[key].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _check_truth(truth: GroundTruth, cat: Catalogue, users: np.ndarray) -> None:
    if cat.item_ids.size and cat.item_ids.max() >= truth.num_items:
        raise ValueError(
            f"the ground truth knows {truth.num_items} items but the catalogue has item id "
            f"{int(cat.item_ids.max())}: was the world regenerated with other sizes?"
        )
    if users.size and users.max() >= truth.num_users:
        raise ValueError(
            f"the ground truth knows {truth.num_users} users but the split has user id "
            f"{int(users.max())}: was the world regenerated with other sizes?"
        )


def _summarise(per_user: dict[str, np.ndarray], ks: list[int]) -> dict[str, dict]:
    """{ranker: {scope: {metric: {K: mean}}}} from `ranker/scope/metric` arrays."""
    out: dict[str, dict] = {}
    for key, values in per_user.items():
        ranker, scope, metric = key.split("/")
        means = ranking.user_mean(values)
        out.setdefault(ranker, {}).setdefault(scope, {})[metric] = {
            str(k): m for k, m in zip(ks, means, strict=True)
        }
    return out


def evaluate_retrieval(
    model: RetrievalModel,
    cfg: DmmpConfig,
    truth: GroundTruth | None,
    options: RetrievalOptions,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Retrieval metrics of the model and of the reference rankers; the same dict on every
    rank. `model` is a DMMPModel or `dmp.module` (every rank must call this together)."""
    options.validate()
    device = device if device is not None else torch.device("cpu")
    rank, world_size = rank_and_world()
    ks = sorted(set(options.ks))
    cat = load_catalogue(cfg, options.split)
    kmax = max(ks)
    if kmax > len(cat.item_ids):
        raise ValueError(f"K = {kmax} exceeds the {len(cat.item_ids)} items of the catalogue")
    inter = split_interactions(cfg, options.split)
    order = np.argsort(cat.user_ids, kind="stable")
    pos = np.searchsorted(cat.user_ids[order], inter.users)
    pos = np.minimum(pos, len(order) - 1)
    missing = inter.users[cat.user_ids[order][pos] != inter.users]
    if missing.size:
        raise ValueError(
            f"{cat.source}: no row for user id {int(missing[0])} of the {options.split} split "
            f"({missing.size} users missing)"
        )
    user_rows = cat.users.take(pa.array(order[pos]))
    show = progress and rank == 0
    item_vecs = encode_items(model, cfg.features, cat.items, options.batch_size, device, show)
    queries, gates = encode_users(model, cfg.features, user_rows, options.batch_size, device, show)

    lo, hi = share_bounds(len(inter.users), rank, world_size)
    users = inter.users[lo:hi]
    model_rows = search_top_k(item_vecs, queries[lo:hi], kmax)
    popular = np.lexsort((np.arange(len(cat.item_ids)), -train_click_counts(cfg, cat.item_ids)))
    popular_rows = np.broadcast_to(popular[:kmax], (len(users), kmax))
    per_user = {
        **_recalls("model/all_users", model_rows, users, cat, inter, ks),
        **_recalls("popularity/all_users", popular_rows, users, cat, inter, ks),
    }
    sample_size = 0
    if truth is not None and options.oracle_users > 0:
        _check_truth(truth, cat, inter.users)
        rng = np.random.default_rng(options.seed)
        sample_size = min(options.oracle_users, len(inter.users))
        chosen = np.zeros(len(inter.users), dtype=bool)
        chosen[rng.choice(len(inter.users), sample_size, replace=False)] = True
        mine = np.flatnonzero(chosen[lo:hi])
        rankers = {"model": model_rows, "popularity": popular_rows}
        per_user.update(_oracle_metrics(users, mine, rankers, cat, inter, truth, ks, show))
    gathered = gather_rows(per_user)
    summary = _summarise(gathered, ks)
    n_click, n_conv = inter.counts(inter.users)
    model_summary = summary.pop("model")
    return {
        "retrieval": {
            "k": ks,
            "split": options.split,
            "catalogue": cat.source,
            "items": int(len(cat.item_ids)),
            "users": int(len(inter.users)),
            "users_with_clicks": int((n_click > 0).sum()),
            "users_with_conversions": int((n_conv > 0).sum()),
            "oracle_sample_users": sample_size,
            "oracle_sample_seed": options.seed,
            "mean_gate": [float(x) for x in gates.mean(axis=0)],
            "index": f"faiss IndexFlatIP (exact), dim {item_vecs.shape[1]}",
            **model_summary,
        },
        "references": summary,
    }
