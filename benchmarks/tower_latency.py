"""Tower latency of a trained run on any device (`make gpu-check` runs it on a GPU).

The trained model (unsharded, as benchmarks/trained.py loads it) answers user queries
(`query_vector`, lookups and gate included) and item vectors (`item_vector`) at batch 1, 64 and
1024, each call timed on its own. On a GPU every timed call ends with torch.cuda.synchronize:
CUDA calls return before their work is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import percentiles_ms, time_calls
from benchmarks.run import _first_rows
from benchmarks.trained import item_kjts, load_unsharded, user_kjts
from dmmp_rec.config import DmmpConfig

BATCHES = (1, 64, 1024)


def tower_latency(cfg: DmmpConfig, run: Path, device: str, calls: int) -> dict[str, Any]:
    """{"user/B": percentiles, "item/B": percentiles} in ms for B in BATCHES."""
    dev = torch.device(device)
    model = load_unsharded(cfg, run).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    largest = max(BATCHES)
    out: dict[str, Any] = {"device": str(dev), "calls": calls}
    for side, fn, kjts in (
        ("user", model.query_vector, user_kjts(cfg, np.arange(largest), largest)),
        ("item", model.item_vector, item_kjts(cfg, largest, largest)),
    ):
        full = kjts[0].to(dev)
        for batch in BATCHES:
            kjt = full if batch == full.stride() else _first_rows(full, batch)

            def call(k: Any = kjt, f: Any = fn) -> None:
                with torch.no_grad():
                    f(k)
                sync()

            out[f"{side}/{batch}"] = percentiles_ms(time_calls(call, calls, 5))
    return out
