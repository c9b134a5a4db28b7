"""`dmmp-rec export --checkpoint RUN [--out DIR] [--config F] [overrides]`: serving artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmmp_rec.cli import add_config_arguments
from dmmp_rec.commands.option_types import positive_int, probability
from dmmp_rec.commands.run_config import config_for_checkpoint, run_dir

HELP = "export a trained run for serving: user side (torch.export), item vectors, FAISS indexes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, required=False)
    parser.add_argument(
        "--checkpoint", required=True, help="run directory (train.out) or a step-* directory"
    )
    parser.add_argument("--out", default=None, help="export directory (default: RUN/export)")
    parser.add_argument(
        "--recall-queries", type=positive_int, default=1000, help="users that measure HNSW recall"
    )
    parser.add_argument(
        "--recall-k", type=positive_int, default=100, help="k of the measured recall@k"
    )
    parser.add_argument(
        "--recall-target",
        type=probability,
        default=0.95,
        help="recall@k the HNSW efSearch must reach",
    )
    parser.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8: int8 row-wise tables in the user side and item encoder (docs/serving.md)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress")


def run(args: argparse.Namespace) -> int:
    from dmmp_rec.serving.export import ExportOptions, export_run

    cfg = config_for_checkpoint(args, "export")
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else run_dir(checkpoint) / "export"
    options = ExportOptions(
        queries=args.recall_queries,
        recall_k=args.recall_k,
        recall_target=args.recall_target,
        progress=not args.quiet,
        quantize=args.quantize,
    )
    manifest = export_run(cfg, checkpoint, out, options)  # ExportError: the CLI reports it
    sizes = {f.path: f.bytes for f in manifest.files.values()}
    print(
        f"exported step {manifest.train_step} ({manifest.variant}) to {out}: {manifest.num_items} "
        f"items x {manifest.vector_dim} floats, tau {manifest.tau:.4f}, HNSW efSearch "
        f"{manifest.approx.ef_search} (recall@{manifest.approx.k} {manifest.approx.recall:.4f}), "
        f"{manifest.export_seconds} s"
    )
    print("files: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items()))
    q = manifest.quantization
    if q is not None:
        ratio = {k: q.fp32_table_bytes[k] / max(v, 1) for k, v in q.table_bytes.items()}
        print(
            f"int8 tables: user side {q.table_bytes['user_side']:,} bytes "
            f"({ratio['user_side']:.2f}x smaller), item encoder {q.table_bytes['item_side']:,} "
            f"({ratio['item_side']:.2f}x); top-{q.top_k} overlap with fp32 "
            f"{q.top_k_overlap_mean:.4f} (min {q.top_k_overlap_min:.2f}) on {q.users} users"
        )
    return 0
