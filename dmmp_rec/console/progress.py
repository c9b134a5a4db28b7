"""One progress helper for training, evaluation, export, comparison and data conversion.

On a terminal it is a tqdm bar. Anywhere else (a log file, a pipe, torchx's local_cwd
scheduler) redrawn frames turn into thousands of lines, so it prints one plain line when the
count crosses another `every_percent` of the total (but not within `min_s` of the last line, so
a pass of a few seconds prints one line, not ten) or `every_s` seconds have passed since the
last line, and the final state on close: at most 100 / every_percent + 1 lines plus one per
`every_s` for a known total.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

from tqdm import tqdm

T = TypeVar("T")

EVERY_PERCENT = 10.0
EVERY_S = 60.0
MIN_S = 10.0


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LineProgress:
    """tqdm's update / set_postfix / write / close, printed as a bounded number of lines."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        initial: int = 0,
        stream: IO[str] | None = None,
        every_percent: float = EVERY_PERCENT,
        every_s: float = EVERY_S,
        min_s: float = MIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_percent <= 0 or every_s <= 0 or min_s < 0:
            raise ValueError(
                f"need every_percent > 0, every_s > 0, min_s >= 0; got {every_percent}, "
                f"{every_s}, {min_s}"
            )
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self.stream = stream if stream is not None else sys.stderr
        self.every_percent, self.every_s, self.min_s = every_percent, every_s, min_s
        self.clock = clock
        self.postfix = ""
        self.lines = 0
        self._printed: tuple[int, str] | None = None
        self._start = self._last_time = clock()
        self._start_n = initial
        self._last_step = self._step(initial)
        self._closed = False

    def _step(self, n: int) -> int:
        """How many `every_percent` steps of the total `n` has crossed (0 without a total)."""
        if not self.total:
            return 0
        return int(100.0 * n / self.total // self.every_percent)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        step = self._step(self.n)
        since = now - self._last_time
        if (step > self._last_step and since >= self.min_s) or since >= self.every_s:
            self._print(now)
            self._last_step = step

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _print(self, now: float) -> None:
        self._last_time = now
        self._printed = (self.n, self.postfix)
        elapsed = now - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        units = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        done = f"{self.n}/{self.total} {units}" if self.total else f"{self.n} {units}"
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        speed = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
        self.write(f"{self.desc}: {done}{pct}, {elapsed:.0f} s, {speed} {self.unit}/s{tail}")
        self.lines += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._printed != (self.n, self.postfix):  # the last state, once
                self._print(self.clock())


class _Iterating(Generic[T]):
    """Iterates `items`, counting each one on `bar`, and closes the bar at the end."""

    def __init__(self, items: Iterable[T], bar: Any) -> None:
        self.items, self.bar = items, bar

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.items:
                yield item
                self.bar.update(1)
        finally:
            self.bar.close()


def progress_bar(
    total: int | None,
    desc: str,
    unit: str,
    initial: int = 0,
    stream: IO[str] | None = None,
) -> Any:
    """A tqdm bar on a terminal, else a LineProgress; both take update, set_postfix, write and
    close."""
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream):
        return tqdm(
            total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=stream
        )
    return LineProgress(total, desc, unit, initial, stream)


def track(
    items: Iterable[T],
    desc: str,
    unit: str,
    enabled: bool = True,
    total: int | None = None,
    stream: IO[str] | None = None,
) -> Iterable[T]:
    """`items` with progress when `enabled` (tqdm(items) on a terminal, lines elsewhere)."""
    if not enabled:
        return items
    if total is None and hasattr(items, "__len__"):
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return _Iterating(items, progress_bar(total, desc, unit, stream=stream))


def advance_lines(bar: Any | None, lines: int, position: int, size: int, **postfix: object) -> None:
    """Move `bar` (a progress_bar counting the lines of a file read front to back; None: no
    progress) to `lines`, showing the share of the file's `size` bytes read at `position`:
    the line count of a raw file of tens of GB is unknown, its byte size is not."""
    if bar is None:
        return
    bar.set_postfix(read=f"{100.0 * position / max(size, 1):.1f}% of file", **postfix)
    bar.update(lines - bar.n)
