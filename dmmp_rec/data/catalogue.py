"""The catalogues retrieval is measured against, and who interacted with what in a split.

`items.parquet` (one row per item, row i = item id i) and `users.parquet` (one row per user, the
user and context features as of the test period) are written by `dmmp-rec synth`; data without
them (Ali-CCP) falls back to each id's first row in the split. `Interactions` are the unique
clicked / converted (user, item) pairs of a split: the logged relevance of recall metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.kjt import decode_ids
from dmmp_rec.data.schema import CLICK, CONVERSION, HOUR, split_files

ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"


def user_side(features: FeaturesConfig) -> list[FeatureSpec]:
    """The features a query is built from: user, then context (the KJT key order)."""
    return features.group("user") + features.group("context")


def item_side(features: FeaturesConfig) -> list[FeatureSpec]:
    return features.group("item")


def id_features(features: FeaturesConfig) -> tuple[str, str]:
    """(user id feature, item id feature): the first feature of each group, as in the model."""
    return features.group("user")[0].name, features.group("item")[0].name


def truth_keys(features: FeaturesConfig) -> dict[str, str]:
    """{column: feature} of what the ground truth reads per impression: the user and item ids,
    and the hour (`schema.HOUR`) when the config has that feature."""
    user_key, item_key = id_features(features)
    keys = {"user_id": user_key, "item_id": item_key}
    if HOUR in features.names:
        keys["hour"] = HOUR
    return keys


@dataclass
class Catalogue:
    """Feature rows of the items to index and of the users to query, with their ids."""

    items: pa.Table
    item_ids: np.ndarray  # id of each item row (the item id feature)
    users: pa.Table
    user_ids: np.ndarray
    source: str


def _ids(table: pa.Table, features: FeaturesConfig, name: str, where: str) -> np.ndarray:
    """Identities, not table rows: raw ids, never folded (in a world whose ids outnumber the
    table's rows, two items sharing a row are still two items)."""
    spec = features.by_name(name)
    return decode_ids(table.column(name).combine_chunks(), spec, where, fold=False).values


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


def split_users(cfg: DmmpConfig, split: str) -> np.ndarray:
    """Sorted unique user ids of a split."""
    user_key, _ = id_features(cfg.features)
    t = pq.read_table(split_files(cfg.data.path, split), columns=[user_key])
    return np.unique(_ids(t, cfg.features, user_key, split))


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
