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

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.epoch_order import (
    CHUNK_TAG,
    ArraySequence,
    ChunkSequence,
    Phase,
    PhaseSpec,
    RowSequence,
    batches_per_rank,
    fits,
)
from dmmp_rec.data.kjt import DataError
from dmmp_rec.data.pair_features import PairFeatures, candidate_columns, pair_features_for
from dmmp_rec.data.row_block import RowBlock
from dmmp_rec.data.row_groups import RowReader, scan_row_groups
from dmmp_rec.data.schema import split_files

__all__ = ["DataError", "ParquetBatchLoader", "loader_for_split"]


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
        self._spec = PhaseSpec(world_size, batch_size, shuffle_buffer, drop_last)
        self._reader = RowReader(scan_row_groups(self.files, features), self.features)
        self.num_rows = int(self._reader.starts[-1])
        self.num_batches_per_epoch = batches_per_rank(self.num_rows, self._spec)
        if not fits(self.num_rows, self._spec):
            raise DataError(
                f"{self.num_rows} rows in {len(self.files)} files cannot give each of "
                f"{world_size} ranks a batch of {batch_size}"
                + (" (drop_last is on)" if drop_last else "")
            )
        self.oov_counts: dict[str, int] = {s.name: 0 for s in self.features}
        self.epoch = 0
        self._batches = 0  # yielded in the current phase of the current epoch
        self._history: list[tuple[PhaseSpec, int]] = []  # earlier phases of this epoch
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

    def _phase(self) -> Phase:
        groups = len(self._reader.groups)
        first = self._history[0][0] if self._history else self._spec
        if first.shuffle_buffer:
            rng = np.random.default_rng([self.seed, self.epoch, CHUNK_TAG])
            order = rng.permutation(groups)
        else:
            order = np.arange(groups)
        seq: RowSequence = ChunkSequence(self._reader.starts, order)
        for index, (spec, batches) in enumerate(self._history):
            done = Phase(seq, spec, self.seed, self.epoch, index)
            seq = ArraySequence(done.remaining(batches))
        return Phase(seq, self._spec, self.seed, self.epoch, len(self._history))

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
            out = RowBlock.concat(parts)
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

    def _candidate_columns(self, block: RowBlock) -> dict[str, np.ndarray | None]:
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
        history = [PhaseSpec.decode(p) for p in str(state["history"]).split(";") if p]
        saved = PhaseSpec(w, b, k, bool(d))
        if not history and batches >= batches_per_rank(self.num_rows, saved):
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
