"""From per-row id lists to the Parquet columns of `dmmp_rec.data.schema`.

Rules (documented in configs/aliccp.yaml):
- a feature's ids are the common (user) ids of the row's md5 followed by the row's own ids, in
  file order; the real data has each field in one file only;
- multi-valued: the whole list is kept; an absent field gives [0] (row 0 = "missing");
- single-valued: absent gives 0; several ids keep the last one, as the ESMM reference
  preprocessing does, and the row is counted as a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dmmp_rec.data.aliccp.entries import Ragged
from dmmp_rec.data.aliccp.fields import MISSING_ID


@dataclass
class Column:
    array: pa.Array
    missing: int  # rows without any id
    conflicts: int  # single-valued rows that had several ids


def ragged_take(r: Ragged, rows: np.ndarray) -> Ragged:
    """The lists of `rows` in that order; row -1 gives an empty list."""
    offsets = r.offsets
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    lengths = np.where(valid, r.lengths[safe] if len(r.lengths) else 0, 0).astype(np.int64)
    total = int(lengths.sum())
    out_starts = np.cumsum(lengths) - lengths
    idx = np.repeat(offsets[safe] - out_starts, lengths) + np.arange(total, dtype=np.int64)
    return Ragged(lengths, r.values[idx].astype(np.int64))


def concat_rows(first: Ragged, second: Ragged) -> Ragged:
    """Row i = first's list i followed by second's list i."""
    if len(second.values) == 0:
        return Ragged(first.lengths + second.lengths, first.values.astype(np.int64))
    if len(first.values) == 0:
        return Ragged(first.lengths + second.lengths, second.values.astype(np.int64))
    n = len(first.lengths)
    rows = np.arange(n, dtype=np.int64)
    key = np.concatenate(
        [np.repeat(rows * 2, first.lengths), np.repeat(rows * 2 + 1, second.lengths)]
    )
    values = np.concatenate([first.values.astype(np.int64), second.values.astype(np.int64)])
    return Ragged(first.lengths + second.lengths, values[np.argsort(key, kind="stable")])


def multi_column(r: Ragged) -> Column:
    """list<int64>: every id kept; an empty list becomes [MISSING_ID]."""
    empty = r.lengths == 0
    lengths = np.where(empty, 1, r.lengths)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.full(int(offsets[-1]), MISSING_ID, dtype=np.int64)
    shift = np.repeat(offsets[:-1] - r.offsets[:-1], r.lengths)
    values[np.arange(len(r.values), dtype=np.int64) + shift] = r.values
    array = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    return Column(array, int(empty.sum()), 0)


def single_column(r: Ragged) -> Column:
    """int64: the last id of each row, MISSING_ID where there is none."""
    present = r.lengths > 0
    last = np.maximum(r.offsets[1:] - 1, 0)
    values = (
        np.where(present, r.values[np.minimum(last, max(len(r.values) - 1, 0))], MISSING_ID)
        if len(r.values)
        else np.full(len(r.lengths), MISSING_ID, dtype=np.int64)
    )
    return Column(
        pa.array(values.astype(np.int64)), int((~present).sum()), int((r.lengths > 1).sum())
    )
