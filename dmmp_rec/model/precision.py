"""Training precision (`train.precision`): bf16 autocast of the dense part, TF32 on CUDA.

The dense part (teacher and student networks) runs under `torch.autocast` in bf16; its outputs
are cast back to fp32 before the loss terms, so losses, the loss weighting and the gradients of
the embedding tables (fbgemm's fused optimiser) keep fp32. bf16 has fp32's exponent range, so
no gradient scaler is needed. Scoring (evaluation, export) is never autocast.

TF32 (10-bit mantissa matmuls on tensor cores, fp32 range) is switched on for CUDA jobs in
either precision: the dense matmuls that stay fp32 (fp32 runs, and what autocast keeps fp32);
the CPU's matmuls are left as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch.utils import _pytree as pytree

PRECISION_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}

T = TypeVar("T")


@contextlib.contextmanager
def dense_autocast(device_type: str, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to `dtype` on `device_type`; nothing when `dtype` is None (train.precision=fp32).

    Args:
        device_type (str): "cpu" or "cuda", the device the dense part runs on.
        dtype (torch.dtype | None): the autocast dtype (PRECISION_DTYPES); None for none.
    """
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=dtype):
        yield


def compute_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on `like`'s device computes in: autocast's when it is on, else like's.

    Custom autograd functions cast to it themselves (torch autocasts only its own ops, and not
    their `out=` forms).

    Args:
        like (torch.Tensor): a tensor on the device and in the dtype of the operands.

    Returns:
        torch.dtype: autocast's dtype for that device type when enabled, else like.dtype.
    """
    kind = like.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else like.dtype


def as_float32(tree: T) -> T:
    """`tree` with every lower-precision floating tensor cast to fp32 (losses run in fp32).

    Args:
        tree (T): tensors in tuples, NamedTuples, lists or dicts (None allowed).

    Returns:
        T: the same structure; fp32 and integer tensors are returned as they are (no copy).
    """

    def cast(x: Any) -> Any:
        low = isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32
        return x.float() if low else x

    return pytree.tree_map(cast, tree)


def enable_tf32(device: torch.device) -> bool:
    """Let fp32 matmuls and convolutions use TF32 on a CUDA device (the CPU's are left alone).

    Args:
        device (torch.device): the training device.

    Returns:
        bool: True when TF32 was switched on (a CUDA device), False otherwise.
    """
    if device.type != "cuda":
        return False
    # the allow_tf32 flags, not `fp32_precision = "tf32"`: after the new API, any library that
    # reads `allow_tf32` raises ("mix of the legacy and new APIs"); after these, both read
    # consistently. Not set_float32_matmul_precision: it also changes the CPU's (mkldnn) matmuls.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def precision_problem(precision: str, device: torch.device) -> str | None:
    """Why `train.precision` cannot run on `device`, or None when it can.

    bf16 needs a GPU with native bf16 tensor cores (compute capability >= 8.0; a T4 would emulate
    it, slower than fp32); fp32, and bf16 on the CPU, always run.

    Args:
        precision (str): train.precision, "fp32" or "bf16".
        device (torch.device): the training device.

    Returns:
        str | None: a one-line reason naming the GPU, or None.
    """
    if precision != "bf16" or device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return None
    name = torch.cuda.get_device_name(device)
    return f"train.precision=bf16: {name} has no native bf16 (compute capability < 8.0); use fp32"
