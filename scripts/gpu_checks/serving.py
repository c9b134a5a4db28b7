"""The serving steps: export of the GPU-written checkpoint, retrieval from the export, and the
latency of what is served: `dmmp-rec retrieve`'s path, i.e. the export's user side (the
torch.export archive) encoding a batch of requests plus the FAISS search over the catalogue,
each call timed on its own. A serving process runs it on the CPU, as `retrieve` does."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from gpu_checks.core import Check, CheckFailed, cli, read_json

BATCHES = (1, 64, 1024)
TOP_K = 100


def step_export(check: Check) -> dict[str, Any]:
    argv = cli("export", "--checkpoint", str(check.out / "run"), "--quiet")
    check.run("export", argv + ["--out", str(check.out / "export"), "--recall-queries", "200"])
    if check.dry_run:
        return {}
    manifest = read_json(check.out / "export" / "manifest.json")
    return {
        "items": manifest["num_items"],
        "train_step": manifest["train_step"],
        "vector_dim": manifest["vector_dim"],
        "approx_recall": manifest["approx"]["recall"],
        "query_max_abs_diff": manifest["query_max_abs_diff"],
        "seconds": manifest["export_seconds"],
    }


def step_retrieve(check: Check) -> dict[str, Any]:
    argv = cli("retrieve", "--export", str(check.out / "export"), "--demo-users", "5", "-k", "10")
    t0 = time.perf_counter()
    out = check.run("retrieve", argv + ["--format", "jsonl"])
    if check.dry_run:
        return {}
    users = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    found = [len(u["items"]) for u in users]
    if found != [10] * 5:
        raise CheckFailed(f"expected 5 users x 10 candidates, got {found}")
    for user in users:
        fused = [c["fused"] for c in user["items"]]
        if fused != sorted(fused, reverse=True) or not all(math.isfinite(f) for f in fused):
            raise CheckFailed(f"{user['user']}: candidates not in fused-score order: {fused}")
    return {"users": 5, "k": 10, "seconds": round(time.perf_counter() - t0, 2)}


def served_latency(export: Path, calls: int) -> dict[str, Any]:
    """p50 / p99 / mean ms of `Retriever.search` (user side + exact FAISS top-100) and of the
    user side alone, per batch size, on requests read from the world's users."""
    import pyarrow.parquet as pq

    from benchmarks.common import percentiles_ms, time_calls
    from dmmp_rec.data.catalogue import USERS_FILE
    from dmmp_rec.serving.requests import parse_table
    from dmmp_rec.serving.retrieve import Retriever

    retriever = Retriever(export)
    users = pq.read_table(Path(retriever.manifest.data_path) / USERS_FILE)
    out: dict[str, Any] = {"path": "export user_side.pt2 + exact.faiss", "calls": calls}
    for batch in BATCHES:
        table = users.slice(0, min(batch, users.num_rows))
        requests = parse_table(table, retriever.features, USERS_FILE)
        results = retriever.search(requests, TOP_K)
        if len(results) != table.num_rows or any(not r.candidates for r in results):
            raise CheckFailed(f"served path: batch {batch} returned {len(results)} users")

        def search(r: Any = requests) -> None:
            retriever.search(r, TOP_K)

        def encode(r: Any = requests) -> None:
            retriever.encode(r)

        out[f"search/{batch}"] = percentiles_ms(time_calls(search, calls, 3))
        out[f"user_side/{batch}"] = percentiles_ms(time_calls(encode, calls, 3))
    return out


def step_bench_latency(check: Check) -> dict[str, Any]:
    check.commands.append("(in process) gpu_checks.serving.served_latency of OUT/export")
    if check.dry_run:
        return {}
    return served_latency(check.out / "export", 10 if check.device == "cpu" else 100)
