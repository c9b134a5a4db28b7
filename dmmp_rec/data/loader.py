"""Parquet -> Batch, with disjoint rank shares, a seeded shuffle and an exact, portable position.

The order of an epoch is a function of (seed, epoch, files) and of the phase parameters below,
never of which process computes it, so every rank can derive every other rank's share:

1. Chunks: the non-empty row groups of all files, in a seeded random order per epoch (file order
   when `shuffle_buffer` is 0). Concatenated they form the epoch's global row sequence of N rows.
2. Shares: rank r of W reads the contiguous slice [r*N//W, (r+1)*N//W) of that sequence. Shares
   are disjoint and together complete; a rank decodes only the row groups its slice touches.
3. Shuffle: a rank cuts its slice into windows of `shuffle_buffer` rows and permutes each window
   with a generator seeded by (seed, epoch, phase, rank, window) -- a block shuffle buffer whose
   contents are fixed, so a position is simply a number of batches.
4. Batches: every rank yields the same number per epoch (DistributedModelParallel ranks must
   step together). drop_last: floor((N//W)/B) full batches each; the rows after them are dropped
   (`rows_dropped_per_epoch`, a different set every shuffled epoch). No drop_last (evaluation):
   ceil(ceil(N/W)/B) batches each, full ones first and smaller ones last, every row once.

Position: `state_dict()` is the same on every rank: the epoch, the batches yielded in the current
phase and that phase's (world_size, batch_size, shuffle_buffer, drop_last). Restoring with the
same parameters skips whole windows without reading them. Restoring with different ones (another
world size, say) closes the saved phase: the rows it did not yield -- recomputed from row indices
alone, O(N) int64 memory, no data read -- become the sequence of a new phase split as in 2-4.
So a resumed job never repeats a row and, without drop_last, never skips one.

Row groups are the unit of the per-epoch order and of reading: write Parquet with row groups of
roughly 16k-64k rows so that the order mixes well and rank borders cost little.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.errors import DmmpError
from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.pair_features import PairFeatures, candidate_columns, pair_features_for
from dmmp_rec.data.id_policy import OutOfRangeIdError, fold_out_of_range
from dmmp_rec.data.schema import CLICK, CONVERSION, split_files

UNSHUFFLED_WINDOW = 16384  # rows read per window when shuffle_buffer is 0
_CACHE_ROW_GROUPS = 4  # decoded row groups kept; windows touch few, consecutive ones
_CHUNK_TAG = 1  # seed-sequence tags keep the chunk order and window streams independent
_WINDOW_TAG = 2


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
        parts = [self.file] if self.file is not None else []
        parts += [f"row {row}"] if row is not None else []
        parts += [f"column {column!r}"] if column is not None else []
        super().__init__(": ".join([*parts, message]))


# ---------------------------------------------------------------------------------------------
# Row blocks: columns of some rows, jagged ones as (offsets from 0, values)


def _jagged_take(
    offsets: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    index = np.arange(out[-1], dtype=np.int64) + np.repeat(starts - out[:-1], lengths)
    return out, values[index]


@dataclass
class _Block:
    """Decoded, validated rows. `folds[name]` counts folded ids per row (only where any)."""

    n: int
    scalars: dict[str, np.ndarray]
    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    click: np.ndarray
    conversion: np.ndarray
    folds: dict[str, np.ndarray]

    def take(self, rows: np.ndarray) -> _Block:
        return _Block(
            n=len(rows),
            scalars={k: v[rows] for k, v in self.scalars.items()},
            lists={k: _jagged_take(o, v, rows) for k, (o, v) in self.lists.items()},
            click=self.click[rows],
            conversion=self.conversion[rows],
            folds={k: v[rows] for k, v in self.folds.items()},
        )

    def slice(self, lo: int, hi: int) -> _Block:
        lists = {}
        for k, (o, v) in self.lists.items():
            lists[k] = (o[lo : hi + 1] - o[lo], v[o[lo] : o[hi]])
        return _Block(
            n=hi - lo,
            scalars={k: v[lo:hi] for k, v in self.scalars.items()},
            lists=lists,
            click=self.click[lo:hi],
            conversion=self.conversion[lo:hi],
            folds={k: v[lo:hi] for k, v in self.folds.items()},
        )

    @staticmethod
    def concat(blocks: list[_Block]) -> _Block:
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]
        lists = {}
        for k in first.lists:
            parts = [b.lists[k] for b in blocks]
            shifts = np.cumsum([0] + [int(o[-1]) for o, _ in parts[:-1]])
            offsets = [parts[0][0]] + [
                o[1:] + s for (o, _), s in zip(parts[1:], shifts[1:], strict=True)
            ]
            lists[k] = (np.concatenate(offsets), np.concatenate([v for _, v in parts]))
        fold_names = {k for b in blocks for k in b.folds}
        folds = {
            k: np.concatenate([b.folds.get(k, np.zeros(b.n, np.int32)) for b in blocks])
            for k in fold_names
        }
        return _Block(
            n=sum(b.n for b in blocks),
            scalars={k: np.concatenate([b.scalars[k] for b in blocks]) for k in first.scalars},
            lists=lists,
            click=np.concatenate([b.click for b in blocks]),
            conversion=np.concatenate([b.conversion for b in blocks]),
            folds=folds,
        )

    def to_batch(
        self, features: list[FeatureSpec], extra: dict[str, np.ndarray | None] | None = None
    ) -> Batch:
        """A KeyedJaggedTensor in `features` order (key-major values, int32 lengths), then the
        single-valued `extra` keys (None: an empty bag in every row)."""
        extra = extra or {}
        lengths = np.ones((len(features) + len(extra)) * self.n, dtype=np.int32)
        values = []
        for i, spec in enumerate(features):
            if spec.multi_valued:
                offsets, vals = self.lists[spec.name]
                lengths[i * self.n : (i + 1) * self.n] = np.diff(offsets)
                values.append(vals)
            else:
                values.append(self.scalars[spec.name])
        for j, ids in enumerate(extra.values(), start=len(features)):
            if ids is None:
                lengths[j * self.n : (j + 1) * self.n] = 0
            else:
                values.append(np.asarray(ids, dtype=np.int64))
        kjt = KeyedJaggedTensor(
            keys=[s.name for s in features] + list(extra),
            values=torch.from_numpy(np.concatenate(values)),
            lengths=torch.from_numpy(lengths),
        )
        return Batch(
            features=kjt,
            click=torch.from_numpy(np.array(self.click, dtype=np.float32)),
            conversion=torch.from_numpy(np.array(self.conversion, dtype=np.float32)),
        )


# ---------------------------------------------------------------------------------------------
# Files, row groups and decoding


@dataclass(frozen=True)
class _RowGroup:
    file: Path
    index: int  # within the file
    file_row: int  # index within the file of its first row
    rows: int


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _check_schema(file: Path, schema: pa.Schema, features: FeaturesConfig) -> None:
    names = set(schema.names)
    for spec in features.all:
        if spec.name not in names:
            raise DataError("feature column is missing", file, column=spec.name)
        t = schema.field(spec.name).type
        if spec.multi_valued:
            ok = _is_list(t) and pa.types.is_integer(t.value_type)
            want = "a list of integers (multi_valued feature)"
        else:
            ok, want = pa.types.is_integer(t), "an integer column"
        if not ok:
            raise DataError(f"expected {want}, found {t}", file, column=spec.name)
    for label in (CLICK, CONVERSION):
        if label not in names:
            raise DataError("label column is missing", file, column=label)
        t = schema.field(label).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise DataError(f"expected a numeric 0/1 label, found {t}", file, column=label)


def _scan(files: list[Path], features: FeaturesConfig) -> list[_RowGroup]:
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
                    groups.append(_RowGroup(file, i, row, rows))
                row += rows
    return groups


def _first_null_row(arr: pa.Array) -> int:
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def _decode_ids(
    arr: pa.Array, spec: FeatureSpec, rg: _RowGroup
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(values, offsets or None, folds per row or None) of one feature column."""
    if arr.null_count:
        raise DataError("null value", rg.file, rg.file_row + _first_null_row(arr), spec.name)
    offsets = None
    if spec.multi_valued:
        offsets = arr.offsets.to_numpy().astype(np.int64)
        child = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        offsets -= offsets[0]
        if child.null_count:
            row = np.searchsorted(offsets, _first_null_row(child), "right") - 1
            raise DataError("null id in a list", rg.file, rg.file_row + int(row), spec.name)
        values = child.to_numpy().astype(np.int64, copy=False)
    else:
        values = arr.to_numpy().astype(np.int64, copy=False)
    try:
        values, positions = fold_out_of_range(values, spec)
    except OutOfRangeIdError as e:
        bad = e.index if offsets is None else np.searchsorted(offsets, e.index, "right") - 1
        raise DataError(str(e), rg.file, rg.file_row + int(bad), spec.name) from None
    folds = None
    if positions.size:
        rows = positions if offsets is None else np.searchsorted(offsets, positions, "right") - 1
        folds = np.bincount(rows, minlength=rg.rows).astype(np.int32)
    return values, offsets, folds


def _decode_label(arr: pa.Array, name: str, rg: _RowGroup) -> np.ndarray:
    if arr.null_count:
        raise DataError("null label", rg.file, rg.file_row + _first_null_row(arr), name)
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


def _decode(table: pa.Table, rg: _RowGroup, features: list[FeatureSpec]) -> _Block:
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
    return _Block(rg.rows, scalars, lists, click, conversion, folds)


class _Reader:
    """Gathers rows by global row id, decoding row groups through a small LRU cache."""

    def __init__(self, groups: list[_RowGroup], features: list[FeatureSpec]) -> None:
        self.groups = groups
        self.features = features
        self.columns = [s.name for s in features] + [CLICK, CONVERSION]
        self.starts = np.cumsum([0] + [g.rows for g in groups])
        self._cache: OrderedDict[int, _Block] = OrderedDict()

    def _block(self, g: int) -> _Block:
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

    def take(self, ids: np.ndarray) -> _Block:
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
        return _Block.concat(parts).take(inverse)


# ---------------------------------------------------------------------------------------------
# Epoch order, rank shares and phases


class _Sequence:
    """The rows of one phase in order, as global row ids (see the module docstring, 1)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def ids(self, lo: int, hi: int) -> np.ndarray:
        raise NotImplementedError


class _ChunkSequence(_Sequence):
    def __init__(self, starts: np.ndarray, order: np.ndarray) -> None:
        sizes = np.diff(starts)[order]
        self.order = order
        self.group_starts = starts
        self.pos = np.concatenate([[0], np.cumsum(sizes)])

    def __len__(self) -> int:
        return int(self.pos[-1])

    def ids(self, lo: int, hi: int) -> np.ndarray:
        c = int(np.searchsorted(self.pos, lo, "right")) - 1
        pieces = []
        while lo < hi:
            end = min(hi, int(self.pos[c + 1]))
            base = int(self.group_starts[self.order[c]]) - int(self.pos[c])
            pieces.append(np.arange(lo + base, end + base, dtype=np.int64))
            lo, c = end, c + 1
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


class _ArraySequence(_Sequence):
    def __init__(self, ids: np.ndarray) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self, lo: int, hi: int) -> np.ndarray:
        return self._ids[lo:hi]


@dataclass(frozen=True)
class _PhaseSpec:
    world_size: int
    batch_size: int
    shuffle_buffer: int
    drop_last: bool

    def encode(self, batches: int) -> str:
        fields = (self.world_size, self.batch_size, self.shuffle_buffer, int(self.drop_last))
        return ",".join(str(x) for x in (*fields, batches))

    @staticmethod
    def decode(text: str) -> tuple[_PhaseSpec, int]:
        w, b, k, d, n = (int(x) for x in text.split(","))
        return _PhaseSpec(w, b, k, bool(d)), n


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _batches_per_rank(rows: int, spec: _PhaseSpec) -> int:
    """Batches every rank yields from `rows` rows (the same for all ranks)."""
    if spec.drop_last:
        return (rows // spec.world_size) // spec.batch_size
    return _ceil_div(_ceil_div(rows, spec.world_size), spec.batch_size)


def _fits(rows: int, spec: _PhaseSpec) -> bool:
    """Whether every rank gets at least one batch, none of them empty."""
    batches = _batches_per_rank(rows, spec)
    return batches > 0 and rows // spec.world_size >= batches


class _Phase:
    """One partition of a sequence over ranks (module docstring, 2-4)."""

    def __init__(self, seq: _Sequence, spec: _PhaseSpec, seed: int, epoch: int, index: int):
        self.seq, self.spec, self.key = seq, spec, (seed, epoch, index)
        n, w = len(seq), spec.world_size
        self.bounds = [(r * n) // w for r in range(w + 1)]
        self.num_batches = _batches_per_rank(n, spec)
        self.window = spec.shuffle_buffer or UNSHUFFLED_WINDOW
        if not spec.drop_last and n // w < self.num_batches:
            raise DataError(
                f"{n} rows left cannot give each of {w} ranks {self.num_batches} non-empty batches"
            )

    def batch_sizes(self, rank: int) -> np.ndarray:
        """B for full batches; without drop_last the last ones shrink so every rank has as many."""
        nb, b = self.num_batches, self.spec.batch_size
        sizes = np.full(nb, b, dtype=np.int64)
        if self.spec.drop_last or nb == 0:
            return sizes
        rows = self.bounds[rank + 1] - self.bounds[rank]
        i = np.arange(nb)
        full = int(np.count_nonzero(rows - i * b - (nb - 1 - i) >= b))
        if full == nb:
            return sizes
        sizes[full:] = 1
        sizes[full] = rows - full * b - (nb - 1 - full)
        return sizes

    def windows(self, rank: int, start: int) -> Iterator[np.ndarray]:
        """Global row ids of the rank's shuffled stream from its `start`-th row, by window."""
        lo, hi, k = self.bounds[rank], self.bounds[rank + 1], self.window
        w, skip = divmod(start, k)
        while lo + w * k < hi:
            ids = self.seq.ids(lo + w * k, min(hi, lo + (w + 1) * k))
            if self.spec.shuffle_buffer:
                rng = np.random.default_rng([*self.key, rank, w, _WINDOW_TAG])
                ids = ids[rng.permutation(len(ids))]
            if len(ids) > skip:
                yield ids[skip:]
            w, skip = w + 1, 0

    def remaining(self, batches: int) -> np.ndarray:
        """Every rank's rows after its first `batches` batches, rank by rank."""
        parts: list[np.ndarray] = []
        for r in range(self.spec.world_size):
            start = int(self.batch_sizes(r)[:batches].sum())
            parts.extend(self.windows(r, start))
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# The loader


class ParquetBatchLoader:
    """Batches of one rank's share of Parquet files; see the module docstring for the order.

    `iter(loader)` yields the rest of the current epoch from the saved position, then advances
    `epoch`; `forever()` chains epochs for training. One iterator at a time: starting another,
    or `load_state_dict`, ends the previous one.
    """

    def __init__(
        self,
        files: list[Path],
        features: FeaturesConfig,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_last: bool = True,
        candidates: int = 0,
        pair_features: PairFeatures | None = None,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
        if batch_size < 1 or shuffle_buffer < 0:
            raise ValueError(
                f"need batch_size >= 1 and shuffle_buffer >= 0, got {batch_size}, {shuffle_buffer}"
            )
        if not files:
            raise DataError("no Parquet files given")
        self.files = [Path(f) for f in files]
        self.features = features.all
        # cross features of the in-batch candidate pairs (data.pair_features)
        self.candidates = candidates
        self._candidate_names = features.candidate_names(candidates)
        self._pair_features = pair_features
        self._id_keys = (features.group("user")[0].name, features.group("item")[0].name)
        self.rank = rank
        self.seed = seed
        self._spec = _PhaseSpec(world_size, batch_size, shuffle_buffer, drop_last)
        self._reader = _Reader(_scan(self.files, features), self.features)
        self.num_rows = int(self._reader.starts[-1])
        self.num_batches_per_epoch = _batches_per_rank(self.num_rows, self._spec)
        if not _fits(self.num_rows, self._spec):
            raise DataError(
                f"{self.num_rows} rows in {len(self.files)} files cannot give each of "
                f"{world_size} ranks a batch of {batch_size}"
                + (" (drop_last is on)" if drop_last else "")
            )
        self.oov_counts: dict[str, int] = {s.name: 0 for s in self.features}
        self.epoch = 0
        self._batches = 0  # yielded in the current phase of the current epoch
        self._history: list[tuple[_PhaseSpec, int]] = []  # earlier phases of this epoch
        self._previous: dict[str, int | str] | None = None  # state at the last epoch's end
        self._token = 0

    @property
    def batch_size(self) -> int:
        return self._spec.batch_size

    @property
    def world_size(self) -> int:
        return self._spec.world_size

    @property
    def rows_dropped_per_epoch(self) -> int:
        """Rows no rank yields in a fresh epoch (all ranks together)."""
        if not self._spec.drop_last:
            return 0
        return self.num_rows - self.world_size * self.num_batches_per_epoch * self.batch_size

    # -- order ----------------------------------------------------------------------------------

    def _phase(self) -> _Phase:
        groups = len(self._reader.groups)
        first = self._history[0][0] if self._history else self._spec
        if first.shuffle_buffer:
            rng = np.random.default_rng([self.seed, self.epoch, _CHUNK_TAG])
            order = rng.permutation(groups)
        else:
            order = np.arange(groups)
        seq: _Sequence = _ChunkSequence(self._reader.starts, order)
        for index, (spec, batches) in enumerate(self._history):
            done = _Phase(seq, spec, self.seed, self.epoch, index)
            seq = _ArraySequence(done.remaining(batches))
        return _Phase(seq, self._spec, self.seed, self.epoch, len(self._history))

    # -- iteration ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        self._token += 1
        return self._epoch_batches(self._token)

    def forever(self) -> Iterator[Batch]:
        """Epoch after epoch, from the saved position; `epoch` advances at each end."""
        self._token += 1
        token = self._token
        while True:
            yield from self._epoch_batches(token)

    def _epoch_batches(self, token: int) -> Iterator[Batch]:
        phase = self._phase()
        sizes = phase.batch_sizes(self.rank)
        if self._batches > len(sizes):
            raise ValueError(
                f"saved position {self._batches} batches is past this epoch's {len(sizes)}"
            )
        windows = phase.windows(self.rank, int(sizes[: self._batches].sum()))
        block, pos = None, 0
        for i in range(self._batches, len(sizes)):
            need = int(sizes[i])
            parts = []
            while need > 0:
                if block is None or pos == block.n:
                    block, pos = self._reader.take(next(windows)), 0
                take = min(need, block.n - pos)
                parts.append(block.slice(pos, pos + take))
                pos, need = pos + take, need - take
            out = _Block.concat(parts)
            if token != self._token:
                raise RuntimeError("this loader iterator was superseded by a newer one")
            self._batches = i + 1
            for name, folds in out.folds.items():
                self.oov_counts[name] += int(folds.sum())
            yield out.to_batch(self.features, self._candidate_columns(out))
        if token != self._token:
            raise RuntimeError("this loader iterator was superseded by a newer one")
        self._previous = self.state_dict()
        self.epoch, self._batches, self._history = self.epoch + 1, 0, []

    def _candidate_columns(self, block: _Block) -> dict[str, np.ndarray | None]:
        if not self._candidate_names:
            return {}
        users, items = (block.scalars[k] for k in self._id_keys)
        return candidate_columns(
            users, items, self.candidates, self._candidate_names, self._pair_features
        )

    # -- position -------------------------------------------------------------------------------

    def state_dict(self, in_flight: int = 0) -> dict[str, int | str]:
        """The position, identical on every rank: plain ints and one string.

        `in_flight` batches were yielded but not consumed (a prefetching train pipeline holds a
        few); the state then points before them, so a restore yields them again.
        """
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, got {in_flight}")
        if in_flight > self._batches:
            back = in_flight - self._batches
            prev = self._previous
            if prev is None or self._history or back > int(prev["batches"]):
                raise ValueError(
                    f"cannot go back {in_flight} batches: only {self._batches} were yielded "
                    "since this epoch or phase began"
                )
            return {**prev, "batches": int(prev["batches"]) - back}
        spec = self._spec
        return {
            "epoch": self.epoch,
            "batches": self._batches - in_flight,
            "world_size": spec.world_size,
            "batch_size": spec.batch_size,
            "shuffle_buffer": spec.shuffle_buffer,
            "drop_last": int(spec.drop_last),
            "history": ";".join(s.encode(n) for s, n in self._history),
            "seed": self.seed,
            "num_rows": self.num_rows,
        }

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        """Continue where `state` was saved, under this loader's own world size and batch size."""
        keys = ("epoch", "batches", "world_size", "batch_size", "shuffle_buffer", "drop_last")
        missing = [k for k in (*keys, "history", "seed", "num_rows") if k not in state]
        if missing:
            raise ValueError(f"loader state lacks {', '.join(missing)}")
        if int(state["seed"]) != self.seed or int(state["num_rows"]) != self.num_rows:
            raise ValueError(
                f"loader state is for seed {state['seed']} over {state['num_rows']} rows; "
                f"this loader has seed {self.seed} over {self.num_rows} rows"
            )
        epoch, batches, w, b, k, d = (int(state[k]) for k in keys)
        history = [_PhaseSpec.decode(p) for p in str(state["history"]).split(";") if p]
        saved = _PhaseSpec(w, b, k, bool(d))
        if not history and batches >= _batches_per_rank(self.num_rows, saved):
            epoch, batches = epoch + 1, 0  # saved at the very end of an epoch: its drop stays
        elif saved != self._spec:
            if batches > 0:
                history.append((saved, batches))
            batches = 0
        self.epoch, self._batches, self._history = epoch, batches, history
        self._previous = None
        self._token += 1


def loader_for_split(
    cfg: DmmpConfig,
    split: str,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool | None = None,
) -> ParquetBatchLoader:
    """The loader of one split: train shuffles and follows `data.drop_last`; val and test read
    in file order without dropping (unless `drop_last` is given)."""
    train = split == "train"
    candidates = cfg.cross_candidates
    return ParquetBatchLoader(
        split_files(cfg.data.path, split),
        cfg.features,
        cfg.data.batch_size,
        rank=rank,
        world_size=world_size,
        shuffle_buffer=cfg.data.shuffle_buffer if train else 0,
        seed=cfg.training_seed,
        drop_last=(cfg.data.drop_last if train else False) if drop_last is None else drop_last,
        candidates=candidates,
        pair_features=pair_features_for(cfg) if candidates else None,
    )
