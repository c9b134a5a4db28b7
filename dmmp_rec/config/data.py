"""Where the Parquet data lives and how the loader batches it."""

from __future__ import annotations

from dataclasses import dataclass

from dmmp_rec.config.base import require


@dataclass
class DataConfig:
    """Parquet layout produced by `synth` or `convert-aliccp` and read by the loader (`data:`).

    Args:
        path (str): directory with the train/, val/, test/ Parquet splits; default
            "data/synthetic".
        batch_size (int): rows per batch per rank, > 0; default 512.
        shuffle_buffer (int): rows of the training shuffle buffer, >= 0; 0 disables shuffling.
            Default 16384.
        drop_last (bool): drop each rank's last, incomplete training batch; default true.
        prefetch_batches (int | None): training batches a worker process prepares ahead
            (Parquet decode, KJT build), >= 0; 0 reads them in the trainer's thread; null
            (default): 2 on a GPU, 0 on the CPU (data/prefetch.py).
    """

    path: str = "data/synthetic"
    batch_size: int = 512
    shuffle_buffer: int = 16384
    drop_last: bool = True
    prefetch_batches: int | None = None

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
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
