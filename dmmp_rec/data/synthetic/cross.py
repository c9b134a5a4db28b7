"""Teacher-only cross features of the synthetic world: what a user's history says about an item.

Computed from observables only: the user's static history (the items of `user_hist_items`) and
the item's observable attributes (`item_category`, `item_brand`); never from hidden parameters
or labels. A two-tower cannot use a feature of the pair; a ranker can, the way production
rankers read Ali-CCP's combination fields 508/509/702/853.

- cross_hist_cat_hits: how many history items share the item's category (0..card-1, capped);
- cross_hist_brand_hits: how many history items share the item's brand (capped);
- cross_hist_item: whether the item itself is in the history (0/1).

`HistoryCrosses` answers for any (user, item) pairs, so the same numbers serve the logged
impressions (written by `dmmp-rec synth`), the in-batch candidate pairs of training (the loader)
and the teacher ranking the whole catalogue (evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dmmp_rec.config.features import FeaturesConfig

# name -> (what it counts, the features it is computed from)
CROSSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cross_hist_cat_hits": ("category", ("user_hist_items", "item_category")),
    "cross_hist_brand_hits": ("brand", ("user_hist_items", "item_brand")),
    "cross_hist_item": ("item", ("user_hist_items",)),
}


def _codes(owner: np.ndarray, key: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (owner, key) codes and their multiplicities."""
    return np.unique(owner.astype(np.int64) * width + key.astype(np.int64), return_counts=True)


def _lookup(codes: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(codes, query)
    pos = np.minimum(pos, max(len(codes) - 1, 0))
    hit = (codes[pos] == query) if len(codes) else np.zeros(len(query), bool)
    return np.where(hit, counts[pos] if len(codes) else 0, 0)


class HistoryCrosses:
    """Counts of history items matching an item, for any (user, item) pairs."""

    def __init__(
        self,
        hist_offsets: np.ndarray,
        hist_items: np.ndarray,
        category: np.ndarray,
        brand: np.ndarray,
        cardinalities: dict[str, int],
    ) -> None:
        unknown = sorted(set(cardinalities) - set(CROSSES))
        if unknown:
            raise ValueError(f"unknown cross features {unknown}; known: {', '.join(CROSSES)}")
        self.cardinalities = dict(cardinalities)
        owner = np.repeat(np.arange(len(hist_offsets) - 1), np.diff(hist_offsets))
        self.num_users = len(hist_offsets) - 1
        self.num_items = len(category)
        self._width = {
            "category": int(category.max(initial=0)) + 1,
            "brand": int(brand.max(initial=0)) + 1,
            "item": self.num_items,
        }
        self._attr = {"category": category, "brand": brand, "item": np.arange(self.num_items)}
        self._tables = {
            kind: _codes(owner, self._attr[kind][hist_items], self._width[kind])
            for kind in ("category", "brand", "item")
        }

    @property
    def names(self) -> list[str]:
        return list(self.cardinalities)

    def __call__(self, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        """{name: int64 ids [n]} for aligned user and item ids."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        if users.shape != items.shape:
            raise ValueError(f"users {users.shape} and items {items.shape} must align")
        if users.size and (users.min() < 0 or users.max() >= self.num_users):
            raise ValueError(f"user id out of range [0, {self.num_users})")
        if items.size and (items.min() < 0 or items.max() >= self.num_items):
            raise ValueError(f"item id out of range [0, {self.num_items})")
        out = {}
        for name, card in self.cardinalities.items():
            kind = CROSSES[name][0]
            query = users * self._width[kind] + self._attr[kind][items]
            counts = _lookup(*self._tables[kind], query)
            out[name] = np.minimum(counts, card - 1).astype(np.int64)
        return out

    @classmethod
    def from_catalogues(cls, root: str | Path, features: FeaturesConfig) -> HistoryCrosses:
        """From a world's users.parquet (user_hist_items, row i = user i) and items.parquet
        (item_category, item_brand, row i = item i): what any reader of the world can see."""
        from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE

        root = Path(root)
        hist = pq.read_table(root / USERS_FILE, columns=["user_hist_items"]).column(0)
        hist = hist.combine_chunks()
        items = pq.read_table(root / ITEMS_FILE)
        n = items.num_rows

        def attribute(name: str) -> np.ndarray:  # absent when no configured cross needs it
            if name not in items.column_names:
                return np.zeros(n, np.int64)
            return items.column(name).to_numpy().astype(np.int64)

        return cls(
            hist.offsets.to_numpy().astype(np.int64),
            hist.values.to_numpy().astype(np.int64),
            attribute("item_category"),
            attribute("item_brand"),
            {s.name: s.cardinality for s in features.group("cross")},
        )
