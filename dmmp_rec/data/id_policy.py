"""The one id mapping, from raw ids to table rows, used by the Ali-CCP converter, the training
loader, evaluation and the retrieval service alike.

`fold`: an id inside its table [0, cardinality) is its own row; any other id (a raw Ali-CCP
feature id, an id unknown to a synthetic table, a negative id) goes to row
1 + splitmix64(id) mod (cardinality - 1), never to row 0, which Ali-CCP keeps for "missing".
The mapping is idempotent (a converted id folds to itself), so the converter can apply it to
raw ids and serving to raw or converted ids and both land in the row training used. Under
`out_of_range: error` an id outside [0, cardinality) stops instead. The hash is SplitMix64 (a
fixed 64-bit mix, the same in every process and run), never Python's salted `hash()`; the
synthetic world's counter-based generator draws from the same function.
"""

from __future__ import annotations

import numpy as np

from dmmp_rec.errors import DmmpError
from dmmp_rec.config.features import FeatureSpec

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


class OutOfRangeIdError(DmmpError, ValueError):
    """An id outside its table under `out_of_range: error`; `index` is its flat position."""

    def __init__(self, feature: str, index: int, value: int, cardinality: int, where: str) -> None:
        self.feature = feature
        self.index = index
        self.value = value
        self.cardinality = cardinality
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}feature {feature!r}: id {value} is outside [0, {cardinality}) "
            "and its out_of_range policy is 'error'"
        )


def splitmix64(ids: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser of `ids + golden ratio`, as uint64 of the same shape. Signed ids
    are taken as their 64-bit two's complement (negative ids wrap); uint64 input is used as is."""
    z = np.asarray(ids)
    if z.dtype != np.uint64:
        z = z.astype(np.int64, copy=False).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def hash_into(ids: np.ndarray, cardinality: int) -> np.ndarray:
    """Where ids outside a table of `cardinality` rows go, as int64: rows
    1..cardinality-1 by SplitMix64 (row 0 is "missing"); a one-row table has only row 0."""
    if cardinality < 2:
        return np.zeros(np.shape(ids), dtype=np.int64)
    return (splitmix64(ids) % np.uint64(cardinality - 1)).astype(np.int64) + 1


def fold_out_of_range(
    ids: np.ndarray, spec: FeatureSpec, where: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Apply `spec.out_of_range` to int ids of any shape.

    Returns (ids, positions): the ids with every out-of-range one folded (the input itself,
    uncopied, when none is out of range) and the flat positions that were folded, so callers can
    count them per row. Under `error`, raises OutOfRangeIdError at the first bad position.
    """
    ids = np.asarray(ids)
    if ids.size == 0 or (ids.min() >= 0 and ids.max() < spec.cardinality):
        return ids, np.empty(0, dtype=np.int64)
    flat = ids.reshape(-1)
    positions = np.flatnonzero((flat < 0) | (flat >= spec.cardinality))
    if spec.out_of_range == "error":
        first = int(positions[0])
        raise OutOfRangeIdError(spec.name, first, int(flat[first]), spec.cardinality, where)
    folded = flat.astype(np.int64, copy=True)
    folded[positions] = hash_into(flat[positions], spec.cardinality)
    return folded.reshape(ids.shape), positions


def fold_ids(ids: np.ndarray, spec: FeatureSpec, where: str = "") -> tuple[np.ndarray, int]:
    """Apply `spec.out_of_range`; returns the ids in [0, cardinality) and how many were folded."""
    folded, positions = fold_out_of_range(ids, spec, where)
    return folded, int(positions.size)
