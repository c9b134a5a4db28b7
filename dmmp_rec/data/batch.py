"""The training batch: every sparse feature in one KeyedJaggedTensor, plus the labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable


@dataclass
class Batch(Pipelineable):
    """What the loader yields and the model consumes; Pipelineable so that
    TrainPipelineSparseDist can move it and overlap its input distribution."""

    features: KeyedJaggedTensor  # keys in FeaturesConfig.all order
    click: torch.Tensor  # float32 [B], 0/1
    conversion: torch.Tensor  # float32 [B], 0/1, never 1 where click is 0
    # int64 [P]: the rows with a click, found on the host by the loader, so that the in-batch
    # softmax gathers them without a nonzero() on the device (its size is what the CPU would
    # otherwise wait for); None for hand-made batches (the loss then takes its [B, B] form)
    clicked_rows: torch.Tensor | None = None

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        rows = self.clicked_rows
        return Batch(
            features=self.features.to(device=device, non_blocking=non_blocking),
            click=self.click.to(device=device, non_blocking=non_blocking),
            conversion=self.conversion.to(device=device, non_blocking=non_blocking),
            clicked_rows=None if rows is None else rows.to(device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.features.record_stream(stream)
        self.click.record_stream(stream)
        self.conversion.record_stream(stream)
        if self.clicked_rows is not None:
            self.clicked_rows.record_stream(stream)

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory (needs a CUDA build of torch), from which
        `to(cuda, non_blocking=True)` really is asynchronous and overlaps compute."""
        rows = self.clicked_rows
        return Batch(
            self.features.pin_memory(),
            self.click.pin_memory(),
            self.conversion.pin_memory(),
            None if rows is None else rows.pin_memory(),
        )

    @property
    def size(self) -> int:
        return int(self.click.shape[0])


def ready_for(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """`batches` as the train pipeline should receive them for `device`: pinned for a GPU, so
    that its non_blocking host-to-device copy on its own stream overlaps the previous step;
    untouched for the CPU."""
    if device.type != "cuda":
        return batches
    return (batch.pin_memory() for batch in batches)
