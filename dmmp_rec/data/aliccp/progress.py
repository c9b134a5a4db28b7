"""Periodic progress lines for the long Ali-CCP passes (tens of GB are read line by line)."""

from __future__ import annotations

import time


class Progress:
    """Prints `label: N lines, X lines/s, P% of file` at most every `every_s` seconds."""

    def __init__(
        self, label: str, total_bytes: int, enabled: bool = True, every_s: float = 5.0
    ) -> None:
        self.label = label
        self.total_bytes = max(total_bytes, 1)
        self.enabled = enabled
        self.every_s = every_s
        self.start = time.perf_counter()
        self._last = self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self, lines: int) -> float:
        return lines / max(self.elapsed(), 1e-9)

    def update(self, lines: int, position: int, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.every_s):
            return
        self._last = now
        pct = 100.0 * position / self.total_bytes
        tail = f", {extra}" if extra else ""
        print(
            f"[{self.label}] {lines:,} lines, {self.rate(lines):,.0f} lines/s, "
            f"{pct:.1f}% of file{tail}",
            flush=True,
        )
