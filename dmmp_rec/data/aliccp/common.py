"""The common_features table, held in memory and joined to skeleton rows by md5.

The real file has ~730k rows with hundreds of entries each, so it is stored as numpy arrays:
one sorted md5 key array (looked up in bulk with searchsorted) and, per configured feature,
row lengths plus folded ids (int32 when every table fits). No Python object per row survives
the load. A duplicate md5 is a malformed row (the later line), as two rows for one key would
make the join ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmmp_rec.console.progress import advance_lines, progress_bar
from dmmp_rec.data.aliccp.entries import EntryBuffer, Ragged
from dmmp_rec.data.aliccp.fields import FieldSlot
from dmmp_rec.data.aliccp.parse import MalformedRowError, RowProblem, parse_common_line


@dataclass
class CommonFeatures:
    keys: np.ndarray  # sorted md5 keys, bytes dtype
    rows: np.ndarray  # int64: row index (into `features`) of keys[i]
    features: list[Ragged]  # one per slot, indexed by row
    lines: int = 0  # non-blank lines read
    bad_rows_skipped: int = 0
    ids_hashed: int = 0

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ids_per_row(self) -> float:
        """Mean number of ids a joined row receives from this table."""
        rows = max(len(self.features[0].lengths), 1) if self.features else 1
        return sum(len(r.values) for r in self.features) / rows

    def lookup(self, md5s: list[bytes]) -> np.ndarray:
        """The row of each md5, -1 where the md5 is not in the table."""
        if len(self.keys) == 0 or not md5s:
            return np.full(len(md5s), -1, dtype=np.int64)
        query = np.array(md5s)
        pos = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return np.where(self.keys[pos] == query, self.rows[pos], -1)


class _Loader:
    """Streams the file into blocks; each block is converted by an EntryBuffer."""

    def __init__(self, path: Path, slots: list[FieldSlot], on_bad_row: str) -> None:
        self.path = path
        self.skip = on_bad_row == "skip"
        fits32 = all(s.spec.cardinality <= np.iinfo(np.int32).max for s in slots)
        self.buffer = EntryBuffer(slots, np.int32 if fits32 else np.int64)
        self.slots = slots
        self.md5s: list[bytes] = []
        self.line_nos: list[int] = []
        self.key_parts: list[np.ndarray] = []
        self.line_parts: list[np.ndarray] = []
        self.length_parts: list[list[np.ndarray]] = [[] for _ in slots]
        self.value_parts: list[list[np.ndarray]] = [[] for _ in slots]
        self.bad = 0
        self.ids_hashed = 0

    def bad_line(self, line_no: int, reason: str) -> None:
        if self.skip:
            self.bad += 1
            return
        self.flush()  # an earlier line of the pending block may be bad too: report that first
        raise MalformedRowError(self.path, line_no, reason)

    def add(self, line_no: int, line: bytes) -> None:
        try:
            md5, entries = parse_common_line(line)
        except RowProblem as e:
            self.bad_line(line_no, str(e))
            return
        self.md5s.append(md5)
        self.line_nos.append(line_no)
        self.buffer.add(entries)

    def flush(self) -> None:
        if not self.buffer.rows:
            return
        block = self.buffer.flush()
        keep = np.ones(len(self.md5s), dtype=bool)
        if block.bad_rows:
            if not self.skip:
                first = min(block.bad_rows)
                raise MalformedRowError(self.path, self.line_nos[first], block.bad_rows[first])
            keep[list(block.bad_rows)] = False
            self.bad += len(block.bad_rows)
        self.ids_hashed += block.ids_hashed
        self.key_parts.append(np.array(self.md5s)[keep])
        self.line_parts.append(np.asarray(self.line_nos, dtype=np.int64)[keep])
        for i, r in enumerate(block.features):
            self.length_parts[i].append(r.lengths[keep])  # bad rows have no values
            self.value_parts[i].append(r.values)
        self.md5s, self.line_nos = [], []

    def finish(self, lines: int) -> CommonFeatures:
        self.flush()
        keys = np.concatenate(self.key_parts) if self.key_parts else np.array([], dtype="S1")
        line_of = np.concatenate(self.line_parts) if self.line_parts else np.zeros(0, np.int64)
        features = [
            Ragged(
                np.concatenate(lp) if lp else np.zeros(0, np.int64),
                np.concatenate(vp) if vp else np.zeros(0, self.buffer.value_dtype),
            )
            for lp, vp in zip(self.length_parts, self.value_parts, strict=True)
        ]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        later = np.flatnonzero(keys[1:] == keys[:-1]) + 1  # stable sort: the later line
        if len(later):
            if not self.skip:
                first = later[np.argmin(line_of[order[later]])]
                raise MalformedRowError(
                    self.path,
                    int(line_of[order[first]]),
                    f"duplicate md5 {keys[first][:40]!r}, first seen on line "
                    f"{int(line_of[order[first - 1]])}",
                )
            self.bad += len(later)
            mask = np.ones(len(keys), dtype=bool)
            mask[later] = False
            keys, order = keys[mask], order[mask]
        return CommonFeatures(
            keys, order.astype(np.int64), features, lines, self.bad, self.ids_hashed
        )


def load_common(
    path: Path,
    slots: list[FieldSlot],
    on_bad_row: str = "error",
    progress: bool = True,
    block_entries: int = 1_000_000,
) -> CommonFeatures:
    """Read a common_features file into memory, keeping only the configured fields."""
    loader = _Loader(path, slots, on_bad_row)
    size = path.stat().st_size
    bar = progress_bar(None, "common_features", "line") if progress else None
    lines = 0
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            lines += 1
            loader.add(line_no, line)
            if loader.buffer.entries >= block_entries:
                loader.flush()
                advance_lines(bar, lines, f.tell(), size)
        table = loader.finish(lines)
        advance_lines(bar, lines, f.tell(), size, md5_keys=f"{len(table):,}")
    if bar is not None:
        bar.close()
    return table
