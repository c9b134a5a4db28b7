"""Keeping the checkpoint that validated best (`train.select_best_on`).

CTR models' embedding tables overfit in the second pass over the data (docs/model.md): the
last checkpoint of a long run is not its best. With `select_best_on` set, training validates on
the whole validation day every `eval_every` steps, checkpoints at each validation, and records
here which step scored best; that checkpoint is never pruned, and `dmmp-rec eval` / `export`
load it instead of the newest. The record survives restarts (it lives in the run directory).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dmmp_rec.distributed.checkpoint import BEST_FILE


class BestTracker:
    """The best validation so far of one metric (higher is better), persisted as best.json."""

    def __init__(self, run_dir: Path, metric: str) -> None:
        self.path = Path(run_dir) / BEST_FILE
        self.metric = metric
        self.step: int | None = None
        self.value = -math.inf
        self.history: list[dict[str, Any]] = []
        if self.path.is_file():
            saved = json.loads(self.path.read_text())
            if saved.get("metric") == metric:
                self.step, self.value = int(saved["step"]), float(saved["value"])
                self.history = list(saved.get("history", []))

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Record a validation; True when it is the new best (NaN never is)."""
        value = float(metrics.get(self.metric, math.nan))
        self.history = [h for h in self.history if h["step"] < step]  # a resumed run redoes
        self.history.append({"step": step, "value": value})
        improved = math.isfinite(value) and value > self.value
        if improved:
            self.step, self.value = step, value
        return improved

    def write(self) -> None:
        record = {
            "metric": self.metric,
            "step": self.step,
            "value": self.value,
            "history": self.history,
        }
        self.path.write_text(json.dumps(record, indent=1) + "\n")

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "step": self.step, "value": self.value}
