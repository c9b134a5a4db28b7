"""User feature requests for retrieval: JSON lines or Parquet -> validated, folded id arrays.

JSON lines: one object per line mapping every user-side feature name to an integer id
(single-valued features) or a list of integer ids (multi-valued features; a bare integer is a bag
of one, an empty list an empty bag). Parquet: one column per feature, int64 or list<int64>.
Anything else -- an unknown or missing feature, a string, a float, a bool, a null, a list for a
single-valued feature, a nested list -- is a RequestError naming the file, the line (JSONL,
1-based) or row (Parquet, 0-based) and the field. Ids outside a table follow the feature's
out-of-range policy from the manifest, with the training loader's own hash
(`dmmp_rec.data.id_policy`), so a raw id lands in the row it was trained in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dmmp_rec.data.id_policy import OutOfRangeIdError, fold_out_of_range
from dmmp_rec.data.kjt import DataError, decode_ids
from dmmp_rec.serving.manifest import UserFeature


class RequestError(DataError):
    """Bad request input, located by file, line or row, and field.

    A DataError: Parquet columns are decoded by `data.kjt.decode_ids`, whose errors are
    re-located here by field.

    Args:
        message (str): what is wrong.
        file (str | None): the requests file.
        where (str | None): "line N" (JSON lines, 1-based) or "row N" (Parquet, 0-based).
        field (str | None): the feature.
    """

    def __init__(
        self,
        message: str,
        file: str | None = None,
        where: str | None = None,
        field: str | None = None,
    ) -> None:
        parts = [p for p in (file, where) if p] + ([f"field {field!r}"] if field else [])
        ValueError.__init__(self, ": ".join([*parts, message]))
        self.file, self.where, self.field, self.message = file, where, field, message
        self.row, self.column = None, field


@dataclass
class UserRequests:
    """Users in input order; per feature (manifest order) flat ids and B+1 bag offsets.

    Args:
        features (list[UserFeature]): the manifest's user-side features.
        values (list[np.ndarray]): per feature, int64 ids folded into [0, cardinality)
            (managed features: raw ids).
        offsets (list[np.ndarray]): per feature, int64 [B + 1]: user b's ids are
            values[offsets[b]:offsets[b+1]].
        labels (list[str]): where each user came from ("line 3" / "row 2").
        folded (dict[str, np.ndarray]): feature -> ids folded per user, [B] (only features
            with any).
    """

    features: list[UserFeature]
    values: list[np.ndarray]
    offsets: list[np.ndarray]
    labels: list[str]
    folded: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, lo: int, hi: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inputs of the exported user side for users [lo, hi): values, bag starts.

        Args:
            lo (int): first user, inclusive.
            hi (int): last user, exclusive.

        Returns:
            tuple[list[torch.Tensor], list[torch.Tensor]]: per feature its ids (an int64 copy) and
            the users' bag starts, [hi - lo].
        """
        values, starts = [], []
        for v, o in zip(self.values, self.offsets, strict=True):
            # a copy: the id mapping can hand back read-only arrays, which torch warns about
            values.append(torch.from_numpy(np.array(v[o[lo] : o[hi]], dtype=np.int64)))
            starts.append(torch.from_numpy(o[lo:hi] - o[lo]))
        return values, starts

    def folded_for(self, row: int) -> dict[str, int]:
        """How many ids of user `row` were folded by hash, per feature.

        Args:
            row (int): the user's index.

        Returns:
            dict[str, int]: feature -> count, only features with a fold.
        """
        return {k: int(v[row]) for k, v in self.folded.items() if v[row]}


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _type_name(x: object) -> str:
    return "null" if x is None else type(x).__name__


def _bag(value: object, feature: UserFeature, error) -> list[int]:
    if feature.multi_valued:
        if _is_int(value):
            return [value]  # type: ignore[list-item]
        if not isinstance(value, list):
            raise error(f"expected a list of integers, got {_type_name(value)} {value!r}")
        for x in value:
            if not _is_int(x):
                raise error(f"expected a list of integers, found {_type_name(x)} {x!r} in it")
        return value
    if not _is_int(value):
        raise error(f"expected one integer id, got {_type_name(value)} {value!r}")
    return [value]  # type: ignore[list-item]


def _finish(
    features: list[UserFeature], bags: list[list[list[int]]], labels: list[str], file: str
) -> UserRequests:
    """Fold out-of-range ids per the manifest, naming the user and field under `error`."""
    values, offsets, folded = [], [], {}
    for j, feature in enumerate(features):
        lengths = np.array([len(b) for b in bags[j]], dtype=np.int64)
        offs = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = [x for b in bags[j] for x in b]
        try:
            ids = np.array(flat, dtype=np.int64)
        except OverflowError:
            row = next(i for i, b in enumerate(bags[j]) if any(abs(x) >= 2**63 for x in b))
            raise RequestError(
                "id does not fit in int64", file, labels[row], feature.name
            ) from None
        if feature.ids == "managed":  # raw ids: the export's remapping maps them
            values.append(ids)
            offsets.append(offs)
            continue
        try:
            ids, positions = fold_out_of_range(ids, feature.spec())
        except OutOfRangeIdError as e:
            row = int(np.searchsorted(offs, e.index, side="right") - 1)
            raise RequestError(str(e), file, labels[row], feature.name) from None
        if positions.size:
            rows = np.searchsorted(offs, positions, side="right") - 1
            folded[feature.name] = np.bincount(rows, minlength=len(labels))
        values.append(np.asarray(ids, dtype=np.int64))
        offsets.append(offs)
    return UserRequests(features, values, offsets, labels, folded)


def _check_fields(keys: list[str], features: list[UserFeature], error) -> None:
    known = [f.name for f in features]
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise error(f"unknown feature; the user side takes {', '.join(known)}", unknown[0])
    missing = [k for k in known if k not in keys]
    if missing:
        raise error("missing feature (every user-side feature is required)", missing[0])


def parse_jsonl(path: str | Path, features: list[UserFeature]) -> UserRequests:
    """Users from a JSON-lines file; blank lines are skipped.

    Args:
        path (str | Path): the file; any bad line is a RequestError naming its number (1-based).
        features (list[UserFeature]): the manifest's user-side features, in its order.

    Returns:
        UserRequests: one user per non-blank line, in file order.
    """
    file = str(path)
    bags: list[list[list[int]]] = [[] for _ in features]
    labels: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            where = f"line {number}"

            def error(message: str, field: str | None = None, where: str = where) -> RequestError:
                return RequestError(message, file, where, field)

            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise error(f"invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(record, dict):
                raise error(f"expected a JSON object, got {_type_name(record)}")
            _check_fields(list(record), features, error)
            for j, feature in enumerate(features):
                bags[j].append(
                    _bag(record[feature.name], feature, lambda m, n=feature.name: error(m, n))
                )
            labels.append(where)
    if not labels:
        raise RequestError("no users in the file", file)
    return _finish(features, bags, labels, file)


def parse_table(table: pa.Table, features: list[UserFeature], file: str) -> UserRequests:
    """Users from the rows of an Arrow table with exactly the user-side feature columns.

    Args:
        table (pa.Table): one column per feature, int64 or list<int64>.
        features (list[UserFeature]): the manifest's user-side features, in its order.
        file (str): where the table came from, for RequestError messages (rows 0-based).

    Returns:
        UserRequests: one user per row, in row order.
    """

    def error(message: str, field: str | None = None) -> RequestError:
        return RequestError(message, file, None, field)

    _check_fields(table.column_names, features, error)
    if table.num_rows == 0:
        raise RequestError("no users in the file", file)
    n = table.num_rows
    values, offsets, folded = [], [], {}
    for feature in features:
        try:
            ids = decode_ids(table.column(feature.name).combine_chunks(), feature.spec())
        except DataError as e:
            where = None if e.row is None else f"row {e.row}"
            raise RequestError(e.message, file, where, feature.name) from None
        values.append(ids.values)
        offsets.append(np.arange(n + 1, dtype=np.int64) if ids.offsets is None else ids.offsets)
        if ids.folded_rows.size:
            folded[feature.name] = np.bincount(ids.folded_rows, minlength=n)
    return UserRequests(features, values, offsets, [f"row {i}" for i in range(n)], folded)


def read_requests(path: str | Path, features: list[UserFeature]) -> UserRequests:
    """Users from `.parquet` (Parquet) or any other file (JSON lines).

    Args:
        path (str | Path): the requests file; RequestError when it is missing or unreadable.
        features (list[UserFeature]): the manifest's user-side features, in its order.

    Returns:
        UserRequests: validated and folded.
    """
    path = Path(path)
    if not path.is_file():
        raise RequestError("no such file", str(path))
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except pa.ArrowInvalid as e:
            raise RequestError(f"not a readable Parquet file ({e})", str(path)) from None
        return parse_table(table, features, str(path))
    return parse_jsonl(path, features)
