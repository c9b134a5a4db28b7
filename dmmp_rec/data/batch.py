"""The training batch: every sparse feature in one KeyedJaggedTensor, plus the labels."""

from __future__ import annotations

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

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(
            features=self.features.to(device=device, non_blocking=non_blocking),
            click=self.click.to(device=device, non_blocking=non_blocking),
            conversion=self.conversion.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.features.record_stream(stream)
        self.click.record_stream(stream)
        self.conversion.record_stream(stream)

    def pin_memory(self) -> Batch:
        return Batch(self.features.pin(), self.click.pin_memory(), self.conversion.pin_memory())

    @property
    def size(self) -> int:
        return int(self.click.shape[0])
