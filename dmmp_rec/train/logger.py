"""What a person sees: progress on rank 0 (a bar on a terminal, bounded lines in a log) and
TensorBoard scalars; nothing on other ranks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dmmp_rec.console.progress import progress_bar


class TrainLogger:
    """Progress bar with samples/s and the loss, plus TensorBoard scalars, on the main rank."""

    def __init__(
        self, out: Path, total_steps: int, start_step: int, global_batch: int, enabled: bool
    ) -> None:
        self.enabled = enabled
        self.global_batch = global_batch
        self._bar: Any = None  # a tqdm-like bar, on the main rank only
        self._writer: Any = None  # a SummaryWriter, on the main rank only
        self._t0 = time.perf_counter()
        self._start = start_step
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(out / "tensorboard"))
            self._bar = progress_bar(total_steps, "train", "step", initial=start_step)

    def samples_per_s(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._start) * self.global_batch / elapsed if elapsed > 0 else 0.0

    def step(self, step: int, scalars: dict[str, float], log: bool) -> None:
        if not self.enabled:
            return
        if log:  # before update(1): a log line printed by this step shows this step's loss
            rate = self.samples_per_s(step)
            self._bar.set_postfix(
                loss=f"{scalars.get('loss/total', float('nan')):.4f}", samples_s=f"{rate:,.0f}"
            )
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)
            self._writer.add_scalar("throughput/samples_per_s", rate, step)
        self._bar.update(1)

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self.enabled:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)

    def message(self, text: str) -> None:
        if self.enabled:
            self._bar.write(text)

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._writer.close()
