"""Where the Parquet data lives and how the loader batches it."""

from __future__ import annotations

from dataclasses import dataclass

from dmmp_rec.config.base import require


@dataclass
class DataConfig:
    """Parquet layout produced by `synth` or `convert-aliccp` and read by the loader."""

    path: str = "data/synthetic"  # directory with train/, val/, test/ Parquet splits
    batch_size: int = 512  # per rank
    shuffle_buffer: int = 16384  # rows; 0 disables shuffling
    drop_last: bool = True
    # training batches a worker process prepares ahead (Parquet decode, KJT build); 0 reads
    # them in the trainer's thread; null: 2 on a GPU, 0 on the CPU (data/prefetch.py)
    prefetch_batches: int | None = None

    def validate(self, path: str) -> None:
        require(self.batch_size > 0, f"{path}.batch_size", f"must be > 0, got {self.batch_size}")
        require(
            self.shuffle_buffer >= 0,
            f"{path}.shuffle_buffer",
            f"must be >= 0, got {self.shuffle_buffer}",
        )
        require(
            self.prefetch_batches is None or self.prefetch_batches >= 0,
            f"{path}.prefetch_batches",
            f"must be >= 0, got {self.prefetch_batches}",
        )
