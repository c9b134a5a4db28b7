"""What every benchmark shares: repetition statistics, the machine record and JSON output.

A figure is only worth reporting with its spread and its context: each measurement is repeated
(after warm-up) and summarised as median, min and max, and the results carry the machine (cores,
memory, library versions) and its load, because the 2 cores here are shared.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def summarise(values: list[float], digits: int = 2) -> dict[str, Any]:
    """Median, min and max of repeated measurements (and the raw values)."""
    if not values:
        raise ValueError("no measurements to summarise")
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "values": [round(v, digits) for v in values],
    }


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50 / p99 / mean latency in milliseconds of per-call timings in seconds."""
    arr = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p99_ms": round(float(np.percentile(arr, 99)), 4),
        "mean_ms": round(float(arr.mean()), 4),
        "n": int(arr.size),
    }


def time_calls(fn: Callable[[], Any], calls: int, warmup: int) -> list[float]:
    """Per-call wall times (s) of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 (an absent package is simply not reported)
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, load and the versions of the stack under test."""
    import torch

    mem = _mem_total_bytes()
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mem_total_gib": None if mem is None else round(mem / 2**30, 1),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchrec": _version("torchrec"),
        "fbgemm_gpu": _version("fbgemm-gpu-cpu") or _version("fbgemm-gpu"),
        "torch_rechub": _version("torch-rechub"),
        "faiss": _version("faiss-cpu") or _version("faiss"),
        "numpy": np.__version__,
        "cuda": torch.cuda.is_available(),
    }


def load_now() -> list[float]:
    """The 1/5/15-minute load average, recorded beside each section (other jobs share cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
