"""Parquet feature columns -> ids (folded by each feature's out-of-range policy) -> a
KeyedJaggedTensor: the decoding that the catalogue encoders, serving and the scripts share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.id_policy import fold_ids


def _column(table: pa.Table, spec: FeatureSpec, where: str) -> pa.Array:
    if spec.name not in table.column_names:
        raise ValueError(
            f"{where}: feature column {spec.name!r} is missing; columns: {table.column_names}"
        )
    arr = table.column(spec.name).combine_chunks()
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{where}: row {row}: column {spec.name!r}: null value")
    is_list = pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)
    if is_list != spec.multi_valued:
        want = "a list column (multi_valued)" if spec.multi_valued else "an integer column"
        raise ValueError(f"{where}: column {spec.name!r}: expected {want}, found {arr.type}")
    return arr


def table_kjt(table: pa.Table, specs: list[FeatureSpec], where: str = "") -> KeyedJaggedTensor:
    """A KJT of `specs` (in that key order) from Parquet columns; out-of-range ids follow each
    feature's `out_of_range` policy, exactly as in the training loader."""
    n = table.num_rows
    values, lengths = [], []
    for spec in specs:
        arr = _column(table, spec, where)
        if spec.multi_valued:
            offsets = arr.offsets.to_numpy().astype(np.int64)
            child = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
            if child.null_count:
                raise ValueError(f"{where}: column {spec.name!r}: null id in a list")
            ids = child.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            lengths.append(np.diff(offsets).astype(np.int32))
        else:
            ids = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            lengths.append(np.ones(n, dtype=np.int32))
        ids, _ = fold_ids(ids, spec, f"{where}: column {spec.name!r}" if where else "")
        values.append(np.asarray(ids, dtype=np.int64))
    return KeyedJaggedTensor(
        keys=[s.name for s in specs],
        values=torch.from_numpy(np.concatenate(values) if values else np.empty(0, np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths) if lengths else np.empty(0, np.int32)),
    )
