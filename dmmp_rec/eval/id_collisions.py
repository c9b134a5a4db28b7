"""How often an id shares its embedding row with another id: hash fold vs managed collisions.

The collision rate of a day is the share of that day's lookups whose row also serves another
distinct id looked up that day (a "live" id). It depends only on the id stream and the id
policy, not on the model, so it is measured by replaying the stream:

- hash: every raw id goes to its row by `dmmp_rec.data.id_policy` (SplitMix64 modulo the table);
- managed: the training days' ids are fed, in batches of the global batch size and in file
  order, to the very modules training uses (`dmmp_rec.model.managed_ids.ManagedIds` in training
  mode: admissions and evictions), then the measured day is looked up in eval mode, as
  validation and serving do (nothing admitted; ids not in the table share its last row).

`raw64` turns the world's dense ids (0..N-1) into 64-bit raw ids by SplitMix64, a bijection, so
that the hash fold meets what it meets in production: ids that are never their own row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.id_policy import fold_ids, splitmix64
from dmmp_rec.data.schema import DAY, split_files
from dmmp_rec.model.managed_ids import ManagedIds


@dataclass
class DayIds:
    """One feature's lookups of one day, in row order: flat ids and each row's count."""

    values: np.ndarray
    lengths: np.ndarray


def collision_rate(ids: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """Share of lookups (and of distinct ids) whose row holds another distinct id of `ids`."""
    if ids.size == 0:
        return {"lookups": 0.0, "ids": 0.0, "distinct_ids": 0.0}
    pairs = np.unique(np.stack([rows, ids]), axis=1)  # distinct (row, id)
    per_row = np.bincount(pairs[0] - pairs[0].min())
    shared = per_row[rows - pairs[0].min()] > 1
    shared_ids = per_row[pairs[0] - pairs[0].min()] > 1
    return {
        "lookups": float(shared.mean()),
        "ids": float(shared_ids.mean()),
        "distinct_ids": float(pairs.shape[1]),
    }


def best_possible(ids: np.ndarray, rows: int) -> float:
    """The lowest collision rate any policy can reach on this day: the day's rows - 1 most
    looked-up ids get rows of their own and every other id shares the last row."""
    _, counts = np.unique(ids, return_counts=True)
    if len(counts) <= rows:
        return 0.0
    rest = np.sort(counts)[::-1][rows - 1 :]
    return float(rest.sum() / counts.sum()) if len(rest) > 1 else 0.0


def read_days(root: str, split: str, feature: str, raw64: bool) -> dict[int, DayIds]:
    """Every day's lookups of `feature` in `split`, in file order."""
    by_day: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for path in split_files(root, split):
        t = pq.read_table(path, columns=[feature, DAY])
        col = t.column(feature).combine_chunks()
        days = t.column(DAY).to_numpy()
        if hasattr(col, "offsets"):  # multi-valued: list column
            offsets = col.offsets.to_numpy()
            values = col.values.to_numpy().astype(np.int64)
            lengths = np.diff(offsets)
        else:
            values = col.to_numpy().astype(np.int64)
            lengths = np.ones(len(values), np.int64)
        ends = np.cumsum(lengths)
        for day in np.unique(days):
            rows = np.flatnonzero(days == day)
            take = np.concatenate([np.arange(ends[r] - lengths[r], ends[r]) for r in rows])
            by_day.setdefault(int(day), []).append((values[take], lengths[rows]))
    out = {}
    for day, parts in sorted(by_day.items()):
        v = np.concatenate([p[0] for p in parts])
        out[day] = DayIds(
            splitmix64(v).view(np.int64) if raw64 else v, np.concatenate([p[1] for p in parts])
        )
    return out


def _batches(day: DayIds, batch_rows: int) -> Iterator[DayIds]:
    ends = np.concatenate([[0], np.cumsum(day.lengths)])
    for lo in range(0, len(day.lengths), batch_rows):
        hi = min(lo + batch_rows, len(day.lengths))
        yield DayIds(day.values[ends[lo] : ends[hi]], day.lengths[lo:hi])


def managed_rows(
    spec: FeatureSpec, train: list[DayIds], measured: DayIds, batch_rows: int
) -> np.ndarray:
    """Rows of `measured`'s ids after the managed modules have trained on `train`."""
    module = ManagedIds([replace(spec, ids="managed")])
    module.train()
    with torch.no_grad():
        for day in train:
            for b in _batches(day, batch_rows):
                module(_kjt(spec.name, b))
        module.eval()
        return module(_kjt(spec.name, measured))[spec.name].values().numpy()


def hash_rows(spec: FeatureSpec, measured: DayIds) -> np.ndarray:
    """Rows of `measured`'s ids under the hash fold (ids outside the table folded)."""
    rows, _ = fold_ids(measured.values, replace(spec, out_of_range="hash", ids="hash"))
    return np.asarray(rows)


def _kjt(name: str, ids: DayIds) -> KeyedJaggedTensor:
    return KeyedJaggedTensor(
        keys=[name],
        values=torch.from_numpy(np.ascontiguousarray(ids.values)),
        lengths=torch.from_numpy(ids.lengths.astype(np.int32)),
    )
