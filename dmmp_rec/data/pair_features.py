"""Cross features of the in-batch candidate pairs: the loader's "feature service".

The teacher scores each row's user with the items of other rows of the batch (the listwise
conversion distillation, dmmp_rec.model.candidates). Those pairs were never logged, so their
cross features are not in the Parquet files: the loader computes them for the pair (row i's
user, row i - r's item), r = 1..R, and adds them as the candidate keys `<cross>@<r>` of the
batch, which share the cross feature's table. A world that can compute crosses for any pair
(the synthetic one, from its users.parquet / items.parquet) provides a `PairFeatures`; data
without one (Ali-CCP: its crosses come precomputed per logged row) gets empty bags for the
candidate keys, and the teacher scores those pairs without cross features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dmmp_rec.config.root import DmmpConfig

PairFeatures = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def pair_features_for(cfg: DmmpConfig) -> PairFeatures | None:
    """The cross features of any (user, item) pair of the data, when the data can give them."""
    from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE
    from dmmp_rec.data.synthetic.cross import CROSSES, HistoryCrosses

    cross = [s.name for s in cfg.features.group("cross")]
    root = Path(cfg.data.path)
    if not cross or not all(n in CROSSES for n in cross):
        return None
    if not (root / USERS_FILE).is_file() or not (root / ITEMS_FILE).is_file():
        return None
    return HistoryCrosses.from_catalogues(root, cfg.features)


def candidate_columns(
    users: np.ndarray,
    items: np.ndarray,
    candidates: int,
    names: list[list[str]],
    source: PairFeatures | None,
) -> dict[str, np.ndarray | None]:
    """{candidate key: ids [B]} for shifts r = 1..candidates (row i's user, row i - r's item,
    as torch.roll(items, r) pairs them); None where the data cannot compute the pair."""
    out: dict[str, np.ndarray | None] = {}
    for r, keys in zip(range(1, candidates + 1), names, strict=True):
        ids = source(users, np.roll(items, r)) if source is not None else None
        for key in keys:
            base = key.rsplit("@", 1)[0]
            out[key] = None if ids is None else ids[base]
    return out
