"""Batches on their way to a GPU: pinned host memory, so the train pipeline's non_blocking copy
really overlaps compute. On a CPU-only torch pinning is refused by torch itself; that these
tests reach torch's refusal shows the KeyedJaggedTensor API is the right one (issue 11: the
batch called a `KeyedJaggedTensor.pin()` that does not exist)."""

from __future__ import annotations

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.data.batch import Batch, ready_for

NO_CUDA = "Cannot access accelerator device|CUDA"


def _batch() -> Batch:
    kjt = KeyedJaggedTensor(
        keys=["user_id", "user_hist_items"],
        values=torch.tensor([1, 2, 3, 4, 5], dtype=torch.int64),
        lengths=torch.tensor([1, 1, 2, 1], dtype=torch.int32),
    )
    return Batch(kjt, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))


def test_batch_pin_memory_for_cuda_copies() -> None:
    batch = _batch()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=NO_CUDA):
            batch.pin_memory()
        return
    pinned = batch.pin_memory()
    assert pinned.features.values().is_pinned() and pinned.features.lengths().is_pinned()
    assert pinned.click.is_pinned() and pinned.conversion.is_pinned()
    assert pinned.features.keys() == batch.features.keys()
    torch.testing.assert_close(pinned.features.values(), batch.features.values())
    on_gpu = pinned.to(torch.device("cuda"), non_blocking=True)
    torch.testing.assert_close(on_gpu.click.cpu(), batch.click)


def test_ready_for_pins_only_for_a_cuda_device() -> None:
    batches = iter([_batch()])
    assert ready_for(batches, torch.device("cpu")) is batches  # nothing to do for the CPU
    for_gpu = ready_for(iter([_batch()]), torch.device("cuda", 0))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=NO_CUDA):
            next(for_gpu)
        return
    assert next(for_gpu).features.values().is_pinned()
