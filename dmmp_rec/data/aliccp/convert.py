"""Convert raw Ali-CCP files into the Parquet layout of `dmmp_rec.data.schema`.

The common_features file is loaded into compact arrays (`aliccp.common`); the sample_skeleton
file, tens of GB, is streamed line by line in blocks, each block joined to the common features
by md5 and written as one Parquet row group. Parts roll over every `rows_per_part` rows so
that each rank of a distributed job can read its own files.

Rules, also written in configs/aliccp.yaml:
- ids: raw ids go through the one id mapping (`dmmp_rec.data.id_policy.fold_out_of_range`):
  an id inside [0, cardinality) stays, any other goes to 1 + SplitMix64(id) mod (cardinality-1);
  row 0 is "missing". With `out_of_range: error` a raw id must already be in [0, cardinality).
- click=0, purchase=1 rows are dropped and counted (the reference preprocessing does the same).
- a skeleton row whose md5 is not in common_features is kept, with every common (user) feature
  missing, and counted; the summary warns when more than 1% of rows miss their join.
- a malformed line stops the conversion with file and line (`on_bad_row="error"`) or is
  skipped and counted (`"skip"`). Parts written by a failed run are removed.
- `day` is 0 (Ali-CCP has no time) and `is_rand` is False.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dmmp_rec.config import DmmpConfig
from dmmp_rec.console.progress import advance_lines, progress_bar
from dmmp_rec.data.aliccp.columns import concat_rows, multi_column, ragged_take, single_column
from dmmp_rec.data.aliccp.common import CommonFeatures, load_common
from dmmp_rec.data.aliccp.entries import EntryBuffer
from dmmp_rec.data.aliccp.fields import FieldSlot, resolve_fields
from dmmp_rec.data.aliccp.parse import MalformedRowError, RowProblem, parse_skeleton_line
from dmmp_rec.data.schema import arrow_schema, part_path, split_dir

__all__ = ["ConversionStats", "MalformedRowError", "convert_aliccp"]

ON_BAD_ROW = ("error", "skip")
# A row group holds at most about this many joined user ids (8 bytes each, a few copies while
# building it): real common rows carry hundreds of ids, so their groups get fewer rows.
MAX_IDS_PER_GROUP = 10_000_000
BLOCK_ENTRIES = 1_000_000  # skeleton entries converted per block (~40 bytes each while pending)


@dataclass
class ConversionStats:
    """What a conversion read, wrote and dropped."""

    skeleton_lines: int = 0  # non-blank skeleton lines read
    common_rows: int = 0  # md5 keys loaded from common_features
    rows_written: int = 0
    clicks: int = 0  # among rows written
    conversions: int = 0  # among rows written
    dropped_click0_purchase1: int = 0
    bad_rows_skipped: int = 0  # skeleton lines (with on_bad_row="skip")
    bad_common_rows_skipped: int = 0  # common_features lines (with on_bad_row="skip")
    missing_common: int = 0  # rows written whose md5 is not in common_features
    ids_hashed: int = 0  # raw ids outside their table, folded by hash (common rows once)
    missing_values: dict[str, int] = field(default_factory=dict)  # feature -> rows without id
    conflicts: dict[str, int] = field(default_factory=dict)  # single-valued, several ids
    parts: list[Path] = field(default_factory=list)
    common_seconds: float = 0.0  # loading common_features
    skeleton_seconds: float = 0.0  # streaming the skeleton, joining and writing

    @property
    def lines_per_second(self) -> float:
        """Skeleton lines converted per second (the join and the Parquet writes included)."""
        return self.skeleton_lines / max(self.skeleton_seconds, 1e-9)

    def summary(self) -> str:
        lines = [
            f"skeleton lines read:          {self.skeleton_lines:,} in "
            f"{self.skeleton_seconds:,.1f} s ({self.lines_per_second:,.0f} lines/s)",
            f"common_features md5 keys:     {self.common_rows:,} "
            f"(loaded in {self.common_seconds:,.1f} s)",
            f"rows written:                 {self.rows_written:,} in {len(self.parts)} part(s)"
            f" (clicks {self.clicks:,}, conversions {self.conversions:,})",
            f"dropped click=0 purchase=1:   {self.dropped_click0_purchase1:,}",
            f"bad rows skipped:             {self.bad_rows_skipped:,} skeleton, "
            f"{self.bad_common_rows_skipped:,} common_features",
            f"missing md5 joins:            {self.missing_common:,}",
            f"ids folded by hash:           {self.ids_hashed:,}",
        ]
        if self.rows_written and self.missing_common > 0.01 * self.rows_written:
            lines.append(
                "WARNING: more than 1% of rows have no common features; "
                "are the skeleton and common files from the same split?"
            )
        conflicts = {k: v for k, v in self.conflicts.items() if v}
        if conflicts:
            lines.append(f"single-valued rows with several ids (last kept): {conflicts}")
        missing = {k: v for k, v in self.missing_values.items() if v}
        if missing:
            lines.append(f"rows without an id (written as 0): {missing}")
        return "\n".join(lines)


class _PartWriter:
    """Row groups into part-NNNNN.parquet files, a new part every `rows_per_part` rows."""

    def __init__(self, root: Path, split: str, schema: pa.Schema, rows_per_part: int) -> None:
        self.root, self.split, self.schema = root, split, schema
        self.rows_per_part = rows_per_part
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None or self._rows_in_part >= self.rows_per_part:
            self.close()
            path = part_path(self.root, self.split, len(self.parts))
            self.parts.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
            self._rows_in_part = 0
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._rows_in_part += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def remove(self) -> None:
        self.close()
        for p in self.parts:
            p.unlink(missing_ok=True)


class _SkeletonBlock:
    """The pending skeleton lines of one row group."""

    def __init__(self, slots: list[FieldSlot]) -> None:
        self.entries = EntryBuffer(slots)
        self.clear()

    def clear(self) -> None:
        self.click: list[int] = []
        self.purchase: list[int] = []
        self.md5: list[bytes] = []
        self.line_no: list[int] = []

    def add(self, line_no: int, parsed: tuple) -> None:
        click, purchase, md5, entries = parsed
        self.click.append(click)
        self.purchase.append(purchase)
        self.md5.append(md5)
        self.line_no.append(line_no)
        self.entries.add(entries)


class _Converter:
    def __init__(
        self,
        slots: list[FieldSlot],
        skeleton: Path,
        common: CommonFeatures,
        writer: _PartWriter,
        on_bad_row: str,
        stats: ConversionStats,
    ) -> None:
        self.slots = slots
        self.skeleton = skeleton
        self.common = common
        self.writer = writer
        self.skip = on_bad_row == "skip"
        self.stats = stats
        self.schema = writer.schema
        self.block = _SkeletonBlock(self.slots)
        for s in self.slots:
            stats.missing_values.setdefault(s.spec.name, 0)
            stats.conflicts.setdefault(s.spec.name, 0)

    def bad_line(self, line_no: int, reason: str) -> None:
        if self.skip:
            self.stats.bad_rows_skipped += 1
            return
        self.flush()  # report an earlier bad line of the pending block first
        raise MalformedRowError(self.skeleton, line_no, reason)

    def add(self, line_no: int, line: bytes) -> None:
        try:
            parsed = parse_skeleton_line(line)
        except RowProblem as e:
            self.bad_line(line_no, str(e))
            return
        self.block.add(line_no, parsed)

    def flush(self) -> None:
        b = self.block
        if not b.md5:
            return
        entries = b.entries.flush()
        keep = np.ones(len(b.md5), dtype=bool)
        if entries.bad_rows:
            if not self.skip:
                first = min(entries.bad_rows)
                raise MalformedRowError(self.skeleton, b.line_no[first], entries.bad_rows[first])
            keep[list(entries.bad_rows)] = False
            self.stats.bad_rows_skipped += len(entries.bad_rows)
        click = np.asarray(b.click, dtype=np.int8)
        purchase = np.asarray(b.purchase, dtype=np.int8)
        dropped = keep & (click == 0) & (purchase == 1)
        self.stats.dropped_click0_purchase1 += int(dropped.sum())
        keep &= ~dropped
        rows = np.flatnonzero(keep)
        common_rows = self.common.lookup([b.md5[i] for i in rows])
        self.stats.missing_common += int((common_rows < 0).sum())
        self.stats.ids_hashed += entries.ids_hashed
        columns = []
        for s, own in zip(self.slots, entries.features, strict=True):
            ids = concat_rows(
                ragged_take(self.common.features[s.index], common_rows), ragged_take(own, rows)
            )
            col = multi_column(ids) if s.spec.multi_valued else single_column(ids)
            self.stats.missing_values[s.spec.name] += col.missing
            self.stats.conflicts[s.spec.name] += col.conflicts
            columns.append(col.array)
        n = len(rows)
        columns += [
            pa.array(click[rows]),
            pa.array(purchase[rows]),
            pa.array(np.zeros(n, dtype=np.int32)),
            pa.array(np.zeros(n, dtype=bool)),
        ]
        self.writer.write(pa.Table.from_arrays(columns, schema=self.schema))
        self.stats.rows_written += n
        self.stats.clicks += int(click[rows].sum())
        self.stats.conversions += int(purchase[rows].sum())
        b.clear()


def _check_arguments(
    skeleton: Path, common: Path, on_bad_row: str, rows_per_group: int, rows_per_part: int
) -> None:
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row must be one of {', '.join(ON_BAD_ROW)}, got {on_bad_row!r}")
    if rows_per_group <= 0 or rows_per_part <= 0:
        raise ValueError("rows_per_group and rows_per_part must be > 0")
    for p in (skeleton, common):
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")


def _clear_target(out: Path, split: str, overwrite: bool) -> None:
    """An empty `out/<split>/`: earlier Parquet files go only with `overwrite`."""
    target = split_dir(out, split)
    old = sorted(target.glob("*.parquet"))
    if old and not overwrite:
        raise FileExistsError(
            f"{target} already holds {len(old)} Parquet file(s); remove them or pass overwrite"
        )
    for p in old:
        p.unlink()
    target.mkdir(parents=True, exist_ok=True)


def _load_common_features(
    common: Path, slots: list[FieldSlot], on_bad_row: str, progress: bool, stats: ConversionStats
) -> CommonFeatures:
    started = time.perf_counter()
    table = load_common(common, slots, on_bad_row, progress)
    stats.common_seconds = time.perf_counter() - started
    stats.common_rows = len(table)
    stats.bad_common_rows_skipped = table.bad_rows_skipped
    stats.ids_hashed = table.ids_hashed
    return table


def _stream_skeleton(
    conv: _Converter, skeleton: Path, group_rows: int, stats: ConversionStats, progress: bool
) -> None:
    """Every skeleton line through `conv`, a row group per `group_rows` rows (or
    BLOCK_ENTRIES entries); the parts written so far are removed when anything fails."""
    size = skeleton.stat().st_size
    bar = progress_bar(None, "sample_skeleton", "line") if progress else None
    started = time.perf_counter()
    try:
        with open(skeleton, "rb") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                stats.skeleton_lines += 1
                conv.add(line_no, line)
                block = conv.block
                if len(block.md5) >= group_rows or block.entries.entries >= BLOCK_ENTRIES:
                    conv.flush()
                    rows = f"{stats.rows_written:,}"
                    advance_lines(bar, stats.skeleton_lines, f.tell(), size, rows_written=rows)
            conv.flush()
            conv.writer.close()
    except BaseException:
        conv.writer.remove()
        raise
    stats.parts = list(conv.writer.parts)
    stats.skeleton_seconds = time.perf_counter() - started
    advance_lines(bar, stats.skeleton_lines, size, size, rows_written=f"{stats.rows_written:,}")
    if bar is not None:
        bar.close()


def convert_aliccp(
    cfg: DmmpConfig,
    skeleton: Path,
    common: Path,
    out: Path,
    split: str = "train",
    on_bad_row: str = "error",
    progress: bool = True,
    *,
    rows_per_group: int = 100_000,
    rows_per_part: int = 1_000_000,
    overwrite: bool = False,
) -> ConversionStats:
    """Convert one sample_skeleton file and its common_features file into `out/<split>/`."""
    skeleton, common, out = Path(skeleton), Path(common), Path(out)
    _check_arguments(skeleton, common, on_bad_row, rows_per_group, rows_per_part)
    slots = resolve_fields(cfg.features)
    _clear_target(out, split, overwrite)
    stats = ConversionStats()
    table = _load_common_features(common, slots, on_bad_row, progress, stats)
    group_rows = max(1, min(rows_per_group, int(MAX_IDS_PER_GROUP / max(table.ids_per_row, 1))))
    writer = _PartWriter(out, split, arrow_schema(cfg.features), rows_per_part)
    conv = _Converter(slots, skeleton, table, writer, on_bad_row, stats)
    _stream_skeleton(conv, skeleton, group_rows, stats, progress)
    return stats
