"""Training batches prepared off the trainer's critical path: Parquet decode and KJT build in a
worker process, pinning (for a GPU) in the trainer's pin thread.

A worker process (torch's DataLoader, one worker, `prefetch_factor` = `data.prefetch_batches`)
runs a copy of the loader from its current position and sends each batch with the loader's
position after it and its out-of-range id counts so far. `state_dict()` is then the position
after the batches the trainer consumed -- exactly what the loader's own `state_dict()` says
without read-ahead -- so checkpoints resume at the same row, and the trainer's loader keeps
counting folded ids. A loader error (a DataError naming file and row) is sent over and raised
in the trainer's process.

Why a process and not a thread: a thread decoding in the trainer's process holds the GIL for
its numpy and Python work, and every small torch op of the step, which releases the GIL, then
waits to take it back; in exploratory runs on configs/bench.yaml a thread 2 batches ahead made
`dmmp-rec train` slower than reading inline (benchmarks/results/loader_prefetch.md).

`data.prefetch_batches` = 0 keeps everything in the trainer's thread (`InlineBatches`); the
default (null) prefetches 2 batches when training on a GPU and reads inline on the CPU, where
the loader (about 1.3 ms of CPU a batch of 1024 on configs/bench.yaml) would share the cores
that the step (about 145 ms of CPU) already uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, IterableDataset

from dmmp_rec.data.batch import Batch, ready_for


class _Loader(Protocol):
    oov_counts: dict[str, int]

    def forever(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict[str, Any]: ...


class InlineBatches:
    """The synchronous path: batches read in the caller's thread when it asks for them."""

    def __init__(self, loader: _Loader, device: torch.device, limit: int) -> None:
        self._loader = loader
        self._batches = ready_for(loader.forever(), device)
        self._left = limit

    def __iter__(self) -> InlineBatches:
        return self

    def __next__(self) -> Batch:
        if self._left <= 0:
            raise StopIteration
        self._left -= 1
        return next(self._batches)

    def state_dict(self) -> dict[str, Any]:
        return self._loader.state_dict()

    def close(self) -> None:
        pass


class _Failed:
    """An error of the worker's loader, sent to be raised in the trainer's process."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _PositionedBatches(IterableDataset):
    """What the worker runs: `limit` (batch, position after it, folded-id counts) triples."""

    def __init__(self, loader: _Loader, limit: int) -> None:
        self.loader = loader
        self.limit = limit

    def __iter__(self) -> Iterator[object]:
        try:
            batches = self.loader.forever()
            for _ in range(self.limit):
                batch = next(batches)
                # the loader's generator is paused at its yield: the position after `batch`
                yield batch, self.loader.state_dict(), dict(self.loader.oov_counts)
        except Exception as error:  # sent to the trainer, raised there
            yield _Failed(error)


def _as_is(item: object) -> object:
    return item


class PrefetchedBatches:
    """`limit` batches of `loader.forever()`, prepared up to `depth` ahead by a worker process."""

    def __init__(self, loader: _Loader, device: torch.device, limit: int, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._loader = loader
        self._position: dict[str, Any] = loader.state_dict()
        self._left = limit
        self._data = DataLoader(
            _PositionedBatches(loader, limit),
            batch_size=None,
            collate_fn=_as_is,
            num_workers=1,
            prefetch_factor=depth,
            pin_memory=device.type == "cuda",  # Batch.pin_memory, in DataLoader's pin thread
            # forked, not spawned: a spawned worker imports torch and torchrec afresh (20+ s
            # on a loaded 2-core machine). On a GPU the tables live on the device, so the
            # trainer's host pages that the fork shares copy-on-write are few.
            multiprocessing_context="fork",
        )
        self._items: Iterator[Any] | None = iter(self._data)

    def __iter__(self) -> PrefetchedBatches:
        return self

    def __next__(self) -> Batch:
        if self._left <= 0 or self._items is None:
            raise StopIteration
        item = next(self._items)
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        batch, self._position, counts = item
        self._loader.oov_counts.update(counts)
        self._left -= 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The loader's position after the batches handed out so far."""
        return self._position

    def close(self) -> None:
        """Stop the worker (DataLoader shuts it down when its iterator goes)."""
        self._items = None


GPU_DEPTH = 2  # data.prefetch_batches when it is null and training runs on a GPU


def training_batches(
    loader: _Loader, device: torch.device, limit: int, depth: int | None
) -> InlineBatches | PrefetchedBatches:
    """The next `limit` training batches of `loader` ready for `device`: prepared `depth`
    ahead by a worker process, or (`depth` 0) in the caller's thread; `depth` None: 2 ahead
    on a GPU, inline on the CPU."""
    if depth is None:
        depth = GPU_DEPTH if device.type == "cuda" else 0
    if depth == 0:
        return InlineBatches(loader, device, limit)
    return PrefetchedBatches(loader, device, limit, depth)
