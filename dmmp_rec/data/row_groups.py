"""Where the loader's rows come from: the Parquet files' row groups (checked against the feature
schema from their footers), decoded through `data.kjt` into row blocks and gathered by global
row id through a small LRU cache of decoded row groups."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.data.kjt import DataError, column_type_problem, decode_ids, first_null_row
from dmmp_rec.data.row_block import RowBlock
from dmmp_rec.data.schema import CLICK, CONVERSION

_CACHE_ROW_GROUPS = 4  # decoded row groups kept; windows touch few, consecutive ones


@dataclass(frozen=True)
class RowGroup:
    file: Path
    index: int  # within the file
    file_row: int  # index within the file of its first row
    rows: int


def _check_schema(file: Path, schema: pa.Schema, features: FeaturesConfig) -> None:
    names = set(schema.names)
    for spec in features.all:
        if spec.name not in names:
            raise DataError("feature column is missing", file, column=spec.name)
        problem = column_type_problem(spec, schema.field(spec.name).type)
        if problem:
            raise DataError(problem, file, column=spec.name)
    for label in (CLICK, CONVERSION):
        if label not in names:
            raise DataError("label column is missing", file, column=label)
        t = schema.field(label).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise DataError(f"expected a numeric 0/1 label, found {t}", file, column=label)


def scan_row_groups(files: list[Path], features: FeaturesConfig) -> list[RowGroup]:
    """Row groups of all files from their footers; checks every file's schema."""
    groups = []
    for file in files:
        if not file.is_file():
            raise DataError("no such Parquet file", file)
        try:
            meta = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"not a readable Parquet file ({e})", file) from None
        with meta:
            _check_schema(file, meta.schema_arrow, features)
            row = 0
            for i in range(meta.metadata.num_row_groups):
                rows = meta.metadata.row_group(i).num_rows
                if rows > 0:
                    groups.append(RowGroup(file, i, row, rows))
                row += rows
    return groups


def _decode_ids(
    arr: pa.Array, spec: FeatureSpec, rg: RowGroup
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(values, offsets or None, folds per row or None) of one feature column."""
    ids = decode_ids(arr, spec, rg.file, rg.file_row)
    folds = None
    if ids.folded_rows.size:
        folds = np.bincount(ids.folded_rows, minlength=rg.rows).astype(np.int32)
    return ids.values, ids.offsets, folds


def _decode_label(arr: pa.Array, name: str, rg: RowGroup) -> np.ndarray:
    if arr.null_count:
        raise DataError("null label", rg.file, rg.file_row + first_null_row(arr), name)
    v = arr.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(arr.type):
        nan = np.flatnonzero(np.isnan(v))
        if nan.size:
            raise DataError("label is NaN", rg.file, rg.file_row + int(nan[0]), name)
    bad = np.flatnonzero((v != 0) & (v != 1))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"label {v[i]} is not 0 or 1", rg.file, rg.file_row + i, name)
    return v.astype(np.float32)


def _decode(table: pa.Table, rg: RowGroup, features: list[FeatureSpec]) -> RowBlock:
    scalars, lists, folds = {}, {}, {}
    for spec in features:
        values, offsets, fold = _decode_ids(table.column(spec.name).combine_chunks(), spec, rg)
        if offsets is None:
            scalars[spec.name] = values
        else:
            lists[spec.name] = (offsets, values)
        if fold is not None:
            folds[spec.name] = fold
    click = _decode_label(table.column(CLICK).combine_chunks(), CLICK, rg)
    conversion = _decode_label(table.column(CONVERSION).combine_chunks(), CONVERSION, rg)
    orphan = np.flatnonzero((conversion == 1) & (click == 0))
    if orphan.size:
        raise DataError(
            "conversion without a click", rg.file, rg.file_row + int(orphan[0]), CONVERSION
        )
    return RowBlock(rg.rows, scalars, lists, click, conversion, folds)


class RowReader:
    """Gathers rows by global row id, decoding row groups through a small LRU cache."""

    def __init__(self, groups: list[RowGroup], features: list[FeatureSpec]) -> None:
        self.groups = groups
        self.features = features
        self.columns = [s.name for s in features] + [CLICK, CONVERSION]
        self.starts = np.cumsum([0] + [g.rows for g in groups])
        self._cache: OrderedDict[int, RowBlock] = OrderedDict()

    def __getstate__(self) -> dict[str, object]:
        """Pickled without its cache (the loader's worker process decodes its own)."""
        return {**self.__dict__, "_cache": OrderedDict()}

    def _block(self, g: int) -> RowBlock:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        rg = self.groups[g]
        with pq.ParquetFile(rg.file) as f:
            table = f.read_row_group(rg.index, columns=self.columns)
        block = _decode(table, rg, self.features)
        self._cache[g] = block
        if len(self._cache) > _CACHE_ROW_GROUPS:
            self._cache.popitem(last=False)
        return block

    def take(self, ids: np.ndarray) -> RowBlock:
        g = np.searchsorted(self.starts, ids, "right") - 1
        local = ids - self.starts[g]
        first, last = int(g.min()), int(g.max())
        if first == last:
            return self._block(first).take(local)
        order = np.argsort(g, kind="stable")
        g_sorted = g[order]
        cuts = np.flatnonzero(np.diff(g_sorted)) + 1
        parts = [
            self._block(int(g_sorted[lo])).take(local[order[lo:hi]])
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True)
        ]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return RowBlock.concat(parts).take(inverse)
