"""Parquet feature columns -> ids (folded by each feature's out-of-range policy) -> KJT.

The one decoder of an Arrow feature column, with one error type (`DataError`, located by file,
row and column): the training loader, the catalogue encoders and serving's Parquet requests all
read ids through `decode_ids`, so a column is accepted, rejected and folded the same way
everywhere (and a raw id lands in the row training used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.errors import DmmpError
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.id_policy import OutOfRangeIdError, fold_out_of_range


class DataError(DmmpError, ValueError):
    """Bad input data, located by file, row (index within that file) and column."""

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.message = message
        parts = [self.file] if self.file is not None else []
        parts += [f"row {row}"] if row is not None else []
        parts += [f"column {column!r}"] if column is not None else []
        super().__init__(": ".join([*parts, message]))

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str | None, int | None, str | None]]:
        """Pickled whole (the loader's worker process sends it to the trainer's)."""
        return DataError, (self.message, self.file, self.row, self.column)


def is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def column_type_problem(spec: FeatureSpec, t: pa.DataType) -> str | None:
    """Why a column of type `t` cannot hold feature `spec`'s ids, or None when it can."""
    if is_list_type(t) != spec.multi_valued:
        if spec.multi_valued:
            return f"expected a list<int64> column (multi-valued), found {t}"
        return f"expected an integer column (single-valued), found {t}"
    ids = t.value_type if spec.multi_valued else t
    if not pa.types.is_integer(ids):
        return f"expected integer ids, found {ids}"
    return None


def first_null_row(arr: pa.Array) -> int:
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


@dataclass
class DecodedIds:
    """One feature column's ids: flat values, bag offsets and which rows had ids folded."""

    values: np.ndarray  # int64 ids in [0, cardinality), out-of-range ones folded
    offsets: np.ndarray | None  # int64 [rows + 1] from 0 (multi-valued), None (single-valued)
    folded_rows: np.ndarray  # the row of every folded id (empty when none was)

    def lengths(self, rows: int) -> np.ndarray:
        if self.offsets is None:
            return np.ones(rows, dtype=np.int32)
        return np.diff(self.offsets).astype(np.int32)


def decode_ids(
    arr: pa.Array,
    spec: FeatureSpec,
    file: str | Path | None = None,
    first_row: int = 0,
    fold: bool = True,
) -> DecodedIds:
    """Validate and fold the ids of `arr` (one chunk of feature `spec`'s column). A problem is a
    DataError naming `file`, the row (`first_row` + the index in `arr`) and the column. Raw ids
    are kept (not folded) for `ids: managed` features, which the model remaps, and with
    `fold=False`, for callers that want identities rather than table rows."""

    def error(message: str, row: int | None = None) -> DataError:
        return DataError(message, file, None if row is None else first_row + int(row), spec.name)

    if arr.null_count:
        raise error("null value", first_null_row(arr))
    problem = column_type_problem(spec, arr.type)
    if problem:
        raise error(problem)
    offsets = None
    child = arr
    if spec.multi_valued:
        offsets = arr.offsets.to_numpy().astype(np.int64)
        child = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        offsets = offsets - offsets[0]
        if child.null_count:
            row = int(np.searchsorted(offsets, first_null_row(child), "right")) - 1
            raise error("null id in a list", row)
    values = child.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def row_of(positions: np.ndarray) -> np.ndarray:
        return positions if offsets is None else np.searchsorted(offsets, positions, "right") - 1

    if spec.ids == "managed" or not fold:  # raw ids (managed: the model's remapping maps them)
        return DecodedIds(values, offsets, np.empty(0, dtype=np.int64))
    try:
        values, positions = fold_out_of_range(values, spec)
    except OutOfRangeIdError as e:
        raise error(str(e), int(row_of(np.array([e.index]))[0])) from None
    return DecodedIds(np.asarray(values, dtype=np.int64), offsets, row_of(positions))


def table_kjt(table: pa.Table, specs: list[FeatureSpec], where: str = "") -> KeyedJaggedTensor:
    """A KJT of `specs` (in that key order) from Parquet columns; out-of-range ids follow each
    feature's `out_of_range` policy, exactly as in the training loader."""
    n = table.num_rows
    values, lengths = [], []
    for spec in specs:
        if spec.name not in table.column_names:
            raise DataError(
                f"feature column {spec.name!r} is missing; columns: {table.column_names}",
                where or None,
            )
        ids = decode_ids(table.column(spec.name).combine_chunks(), spec, where or None)
        values.append(ids.values)
        lengths.append(ids.lengths(n))
    per_key = [len(v) for v in values]  # host-side, so torchrec never counts them on a device
    return KeyedJaggedTensor(
        keys=[s.name for s in specs],
        values=torch.from_numpy(np.concatenate(values) if values else np.empty(0, np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths) if lengths else np.empty(0, np.int32)),
        stride=n,
        length_per_key=per_key,
        offset_per_key=[0, *np.cumsum(per_key, dtype=np.int64).tolist()],
    )
