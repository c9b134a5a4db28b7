"""`dmmp-rec ARGS` with the NCCL device guard on (tests/device_guard.py), for one torchrun rank.

Usage: python guarded_cli.py LOG_DIR dmmp-rec-args...
Every collective our code makes must follow NCCL's rule (CUDA tensors only, on the rank's GPU,
stood in for by CPU memory); rank R writes the collectives it checked to LOG_DIR/rank_R.json.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: device_guard

from device_guard import NCCL, device_guard  # noqa: E402

from dmmp_rec.cli import main  # noqa: E402


def run() -> int:
    log_dir, *argv = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    with device_guard(NCCL, index=int(os.environ.get("LOCAL_RANK", "0"))) as log:
        code = main(argv)
    record = {"calls": [asdict(c) for c in log.calls], "internal_calls": log.internal_calls}
    Path(log_dir, f"rank_{rank}.json").write_text(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(run())
