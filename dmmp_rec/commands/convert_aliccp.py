"""`dmmp-rec convert-aliccp`: raw Ali-CCP files -> the Parquet layout the loader reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmmp_rec.cli import add_config_arguments, config_from_args
from dmmp_rec.commands.option_types import positive_int
from dmmp_rec.data.aliccp.convert import MalformedRowError, convert_aliccp
from dmmp_rec.data.schema import SPLITS
from dmmp_rec.errors import InputError

HELP = "convert raw Ali-CCP files (sample_skeleton + common_features) to Parquet"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "aliccp.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, required=False)
    parser.set_defaults(config=str(DEFAULT_CONFIG))
    parser.add_argument("--skeleton", required=True, type=Path, help="sample_skeleton_*.csv")
    parser.add_argument("--common", required=True, type=Path, help="common_features_*.csv")
    parser.add_argument("--out", type=Path, help="output root (default: data.path of the config)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="output split")
    parser.add_argument(
        "--on-bad-row",
        choices=("error", "skip"),
        default="error",
        help="stop at a malformed line (naming file and line) or skip and count it",
    )
    parser.add_argument(
        "--rows-per-group", type=positive_int, default=100_000, help="Parquet row group"
    )
    parser.add_argument(
        "--rows-per-part", type=positive_int, default=1_000_000, help="rows per file"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing Parquet files of the split"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = args.out if args.out is not None else Path(cfg.data.path)
    try:
        stats = convert_aliccp(
            cfg,
            args.skeleton,
            args.common,
            out,
            split=args.split,
            on_bad_row=args.on_bad_row,
            progress=not args.quiet,
            rows_per_group=args.rows_per_group,
            rows_per_part=args.rows_per_part,
            overwrite=args.overwrite,
        )
    except MalformedRowError as e:
        hint = " (pass --on-bad-row skip to skip and count such lines)"
        raise MalformedRowError(e.file, e.line, e.reason + hint) from None
    except (FileNotFoundError, FileExistsError) as e:
        raise InputError(str(e)) from None
    print(stats.summary())
    print(f"wrote {out / args.split}")
    return 0
