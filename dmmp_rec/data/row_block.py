"""Decoded rows of the Parquet loader: columns of some rows, jagged ones as (offsets from 0,
values), and how a batch is cut from them. Kept apart from reading and ordering so that each of
the loader's three concerns (what a row block is, where rows come from, in which order) reads
on its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.batch import Batch


def jagged_take(
    offsets: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    index = np.arange(out[-1], dtype=np.int64) + np.repeat(starts - out[:-1], lengths)
    return out, values[index]


@dataclass
class RowBlock:
    """Decoded, validated rows. `folds[name]` counts folded ids per row (only where any)."""

    n: int
    scalars: dict[str, np.ndarray]
    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    click: np.ndarray
    conversion: np.ndarray
    folds: dict[str, np.ndarray]

    def take(self, rows: np.ndarray) -> RowBlock:
        return RowBlock(
            n=len(rows),
            scalars={k: v[rows] for k, v in self.scalars.items()},
            lists={k: jagged_take(o, v, rows) for k, (o, v) in self.lists.items()},
            click=self.click[rows],
            conversion=self.conversion[rows],
            folds={k: v[rows] for k, v in self.folds.items()},
        )

    def slice(self, lo: int, hi: int) -> RowBlock:
        lists = {}
        for k, (o, v) in self.lists.items():
            lists[k] = (o[lo : hi + 1] - o[lo], v[o[lo] : o[hi]])
        return RowBlock(
            n=hi - lo,
            scalars={k: v[lo:hi] for k, v in self.scalars.items()},
            lists=lists,
            click=self.click[lo:hi],
            conversion=self.conversion[lo:hi],
            folds={k: v[lo:hi] for k, v in self.folds.items()},
        )

    @staticmethod
    def concat(blocks: list[RowBlock]) -> RowBlock:
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
        return RowBlock(
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
        single-valued `extra` keys (None: an empty bag in every row).

        The KJT carries its stride and per-key lengths and offsets as host ints: without them
        torchrec computes them from the lengths with a `.tolist()`, which on a GPU makes the
        CPU wait for the device. The clicked rows are found here for the same reason."""
        extra = extra or {}
        lengths = np.ones((len(features) + len(extra)) * self.n, dtype=np.int32)
        values, per_key = [], []
        for i, spec in enumerate(features):
            if spec.multi_valued:
                offsets, vals = self.lists[spec.name]
                lengths[i * self.n : (i + 1) * self.n] = np.diff(offsets)
                values.append(vals)
            else:
                values.append(self.scalars[spec.name])
            per_key.append(len(values[-1]))
        for j, ids in enumerate(extra.values(), start=len(features)):
            if ids is None:
                lengths[j * self.n : (j + 1) * self.n] = 0
                per_key.append(0)
            else:
                values.append(np.asarray(ids, dtype=np.int64))
                per_key.append(len(values[-1]))
        kjt = KeyedJaggedTensor(
            keys=[s.name for s in features] + list(extra),
            values=torch.from_numpy(np.concatenate(values)),
            lengths=torch.from_numpy(lengths),
            stride=self.n,
            length_per_key=per_key,
            offset_per_key=[0, *np.cumsum(per_key).tolist()],
        )
        click = np.array(self.click, dtype=np.float32)
        return Batch(
            features=kjt,
            click=torch.from_numpy(click),
            conversion=torch.from_numpy(np.array(self.conversion, dtype=np.float32)),
            clicked_rows=torch.from_numpy(np.flatnonzero(click > 0).astype(np.int64)),
        )
