"""The loader's order: an epoch's row sequence, its rank shares and shuffled windows, and the
phases a resumed job splits the rest of an epoch into (`data.loader`'s docstring, steps 1-4).
Only row ids are computed here, never data, so every rank can derive every other rank's share.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dmmp_rec.data.kjt import DataError

UNSHUFFLED_WINDOW = 16384  # rows read per window when shuffle_buffer is 0
CHUNK_TAG = 1  # seed-sequence tags keep the chunk order and window streams independent
_WINDOW_TAG = 2


class RowSequence:
    """The rows of one phase in order, as global row ids (`data.loader` docstring, 1)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def ids(self, lo: int, hi: int) -> np.ndarray:
        raise NotImplementedError


class ChunkSequence(RowSequence):
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


class ArraySequence(RowSequence):
    def __init__(self, ids: np.ndarray) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self, lo: int, hi: int) -> np.ndarray:
        return self._ids[lo:hi]


@dataclass(frozen=True)
class PhaseSpec:
    world_size: int
    batch_size: int
    shuffle_buffer: int
    drop_last: bool

    def encode(self, batches: int) -> str:
        fields = (self.world_size, self.batch_size, self.shuffle_buffer, int(self.drop_last))
        return ",".join(str(x) for x in (*fields, batches))

    @staticmethod
    def decode(text: str) -> tuple[PhaseSpec, int]:
        w, b, k, d, n = (int(x) for x in text.split(","))
        return PhaseSpec(w, b, k, bool(d)), n


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def batches_per_rank(rows: int, spec: PhaseSpec) -> int:
    """Batches every rank yields from `rows` rows (the same for all ranks)."""
    if spec.drop_last:
        return (rows // spec.world_size) // spec.batch_size
    return _ceil_div(_ceil_div(rows, spec.world_size), spec.batch_size)


def fits(rows: int, spec: PhaseSpec) -> bool:
    """Whether every rank gets at least one batch, none of them empty."""
    batches = batches_per_rank(rows, spec)
    return batches > 0 and rows // spec.world_size >= batches


class Phase:
    """One partition of a sequence over ranks (`data.loader` docstring, 2-4)."""

    def __init__(self, seq: RowSequence, spec: PhaseSpec, seed: int, epoch: int, index: int):
        self.seq, self.spec, self.key = seq, spec, (seed, epoch, index)
        n, w = len(seq), spec.world_size
        self.bounds = [(r * n) // w for r in range(w + 1)]
        self.num_batches = batches_per_rank(n, spec)
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
