"""Bulk conversion of parsed feature_list entries into per-feature id lists.

Lines are split one by one (`aliccp.parse`), but turning millions of byte strings into folded
table ids is done per block, with numpy: per line Python work stays a few list extends. A row
whose wanted entries hold a bad id or value is reported by its row index with the reason, so
the caller can stop at its line or skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np

from dmmp_rec.data.aliccp.fields import FieldSlot
from dmmp_rec.data.id_policy import fold_out_of_range


def _all_numbers(values: list[bytes]) -> bool:
    """Whether every value parses as a float; values repeat a lot, so each distinct one once."""
    try:
        for v in set(values):
            float(v)
    except ValueError:
        return False
    return True


@dataclass
class Ragged:
    """Per-row id lists of one feature: row i holds values[offsets[i]:offsets[i + 1]]."""

    lengths: np.ndarray  # int64 [rows]
    values: np.ndarray  # int64 or int32 [sum(lengths)], table rows

    @property
    def offsets(self) -> np.ndarray:
        out = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out


@dataclass
class EntryBlock:
    """The result of one buffer flush."""

    features: list[Ragged]  # one per slot, rows of bad rows are empty
    bad_rows: dict[int, str]  # row index within the block -> reason
    ids_hashed: int  # wanted entries outside their table, folded by hash (bad rows excluded)


class EntryBuffer:
    """Accumulates the entries of many rows; `flush` converts them in one go."""

    def __init__(self, slots: list[FieldSlot], value_dtype: type = np.int64) -> None:
        self.slots = slots
        self._slot_of = {s.field_bytes: s.index for s in slots}
        self.value_dtype = value_dtype
        self._clear()

    def _clear(self) -> None:
        self.fields: list[bytes] = []
        self.ids: list[bytes] = []
        self.values: list[bytes] = []
        self.counts: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.counts)

    @property
    def entries(self) -> int:
        return len(self.fields)

    def add(self, entries: tuple[list[bytes], ...]) -> None:
        fields, ids, values = entries
        self.fields.extend(fields)
        self.ids.extend(ids)
        self.values.extend(values)
        self.counts.append(len(fields))

    def flush(self) -> EntryBlock:
        """Convert and fold everything added since the last flush, then start empty."""
        n_rows = self.rows
        slot = np.fromiter(
            map(self._slot_of.get, self.fields, repeat(-1)), dtype=np.int64, count=self.entries
        )
        row = np.repeat(np.arange(n_rows, dtype=np.int64), np.asarray(self.counts, dtype=np.int64))
        wanted = np.flatnonzero(slot >= 0)
        bad_rows: dict[int, str] = {}
        raw = self._convert(wanted.tolist(), row, bad_rows)
        slot, row = slot[wanted], row[wanted]
        masks = [slot == s.index for s in self.slots]
        folded = np.zeros(len(wanted), dtype=np.int64)
        hashed = np.zeros(len(wanted), dtype=bool)
        for s, mine in zip(self.slots, masks, strict=True):
            card = s.spec.cardinality
            if s.spec.out_of_range == "hash":  # the one mapping of dmmp_rec.data.id_policy
                mine_at = np.flatnonzero(mine)
                folded[mine_at], positions = fold_out_of_range(raw[mine_at], s.spec)
                hashed[mine_at[positions]] = True
                continue
            for j in np.flatnonzero(mine & ((raw < 0) | (raw >= card))):
                bad_rows.setdefault(
                    int(row[j]),
                    f"field {s.field} ({s.spec.name}): id {int(raw[j])} is outside "
                    f"[0, {card}) and out_of_range is 'error'",
                )
            folded[mine] = raw[mine]
        keep = np.ones(len(wanted), dtype=bool)
        if bad_rows:
            keep = ~np.isin(row, np.fromiter(bad_rows, dtype=np.int64))
        features, ids_hashed = [], int((hashed & keep).sum())
        for mine in masks:
            idx = np.flatnonzero(mine & keep)
            lengths = np.bincount(row[idx], minlength=n_rows).astype(np.int64)
            features.append(Ragged(lengths, folded[idx].astype(self.value_dtype)))
        self._clear()
        return EntryBlock(features, bad_rows, ids_hashed)

    def _convert(self, wanted: list[int], row: np.ndarray, bad_rows: dict[int, str]) -> np.ndarray:
        """Raw int64 ids of the wanted entries; a bad id or value is recorded for its row."""
        ids = [self.ids[j] for j in wanted]
        values = [self.values[j] for j in wanted]
        try:
            raw = np.fromiter(map(int, ids), dtype=np.int64, count=len(ids))
            if _all_numbers(values) and (len(raw) == 0 or raw.min() >= 0):
                return raw
        except (ValueError, OverflowError):
            pass
        raw = np.zeros(len(ids), dtype=np.int64)
        for k, j in enumerate(wanted):
            field = self.fields[j].decode(errors="replace")
            try:
                raw[k] = int(ids[k])
                if raw[k] < 0:
                    raise ValueError
            except (ValueError, OverflowError):
                raw[k] = 0
                reason = f"field {field}: id {ids[k][:40]!r} is not an integer in 0..2^63-1"
                bad_rows.setdefault(int(row[j]), reason)
                continue
            try:
                float(values[k])
            except ValueError:
                reason = f"field {field}: value {values[k][:40]!r} is not a number"
                bad_rows.setdefault(int(row[j]), reason)
        return raw
