"""The on-disk layout every data producer writes and the loader reads.

One Parquet column per feature (int64, or list<int64> for multi-valued features), named as the
feature; label columns `click` and `conversion` (int8, 0/1); `day` (int32) for time splits;
`is_rand` (bool) for impressions from the uniform-random logging slice. Splits live in
`<root>/train`, `<root>/val` and `<root>/test` as `part-NNNNN.parquet` files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.errors import MissingInputError

CLICK = "click"
CONVERSION = "conversion"
DAY = "day"
IS_RAND = "is_rand"
# The hour-of-day context feature: the synthetic world's true pCTR depends on it, so the Bayes
# ceiling reads it per row when the config has it (Ali-CCP data has no such feature).
HOUR = "ctx_hour"
LABELS = (CLICK, CONVERSION)
SPLITS = ("train", "val", "test")
# Row groups are the loader's unit of reading and of the per-epoch shuffled order: small enough
# to mix days within a shuffle window and to keep rank slices from decoding large shared groups.
ROW_GROUP_ROWS = 65_536


def arrow_schema(features: FeaturesConfig) -> pa.Schema:
    """The Parquet schema for a feature set."""
    cols = [
        pa.field(s.name, pa.list_(pa.int64()) if s.multi_valued else pa.int64(), nullable=False)
        for s in features.all
    ]
    cols += [
        pa.field(CLICK, pa.int8(), nullable=False),
        pa.field(CONVERSION, pa.int8(), nullable=False),
        pa.field(DAY, pa.int32(), nullable=False),
        pa.field(IS_RAND, pa.bool_(), nullable=False),
    ]
    return pa.schema(cols)


def split_dir(root: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(root) / split


def part_path(root: str | Path, split: str, index: int) -> Path:
    return split_dir(root, split) / f"part-{index:05d}.parquet"


def split_files(root: str | Path, split: str) -> list[Path]:
    """The Parquet files of one split, in a stable order."""
    files = sorted(split_dir(root, split).glob("*.parquet"))
    if not files:
        raise MissingInputError(
            f"no Parquet files in {split_dir(root, split)}; generate data first "
            "(dmmp-rec synth or dmmp-rec convert-aliccp)"
        )
    return files
