"""Which loader position belongs to a trained step, despite the pipeline's read-ahead.

TrainPipelineSparseDist pulls batches ahead of the step it is training, so the loader's own
position is past the last trained batch. This iterator snapshots the loader state before each
pull; the position to checkpoint after N trained batches is the snapshot taken before pull N.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol


class _Positioned(Protocol):
    def state_dict(self) -> dict[str, Any]: ...


class TrackedIterator:
    """Yields at most `limit` batches from `batches`; remembers the source position before each."""

    def __init__(self, source: _Positioned, batches: Iterator[Any], limit: int) -> None:
        self._source = source
        self._batches = batches
        self._limit = limit
        self.pulled = 0
        self._states: deque[tuple[int, dict[str, Any]]] = deque()

    def __iter__(self) -> TrackedIterator:
        return self

    def __next__(self) -> Any:
        if self.pulled >= self._limit:
            raise StopIteration
        self._states.append((self.pulled, self._source.state_dict()))
        batch = next(self._batches)
        self.pulled += 1
        return batch

    def position_after(self, consumed: int) -> dict[str, Any]:
        """The source state from which the batch after `consumed` trained batches is read."""
        while self._states and self._states[0][0] < consumed:
            self._states.popleft()
        if self._states and self._states[0][0] == consumed:
            return self._states[0][1]
        if consumed == self.pulled:
            return self._source.state_dict()
        raise ValueError(f"no loader position recorded for {consumed} batches")
