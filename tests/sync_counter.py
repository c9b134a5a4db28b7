"""Test instrumentation: record the calls that make the CPU wait for a GPU.

On a CUDA tensor, `item`, `tolist`, `cpu`, `numpy`, a truth test or int()/float(), `nonzero`
(its size is data), boolean-mask indexing and `torch.tensor(data, device=cuda)` (a copy from
pageable host memory) all block the host until the device catches up. This machine has no GPU,
so the counter records every such call made in its thread, whatever the tensor's device, with
the innermost frame that made it; a training step that calls none of them calls none on a GPU.

Some calls are torchrec's or fbgemm's own and cannot be changed without patching them
(`INHERENT`): the input distribution's splits exchange, which TrainPipelineSparseDist runs for
the next batch ahead of the step, and fbgemm's host-side iteration counter (a CPU tensor on a
GPU too). They are reported apart, so a new call in dmmp-rec's code, or a KJT that makes
torchrec count its lengths on the device, is never hidden among them.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

SYNC_METHODS = {
    "item",
    "tolist",
    "cpu",
    "numpy",
    "nonzero",
    "argwhere",
    "masked_select",
    "unique",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
}
MASK_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}

# (module path suffix, function qualname) of the innermost frame: the calls dmmp-rec cannot
# remove, each with why it is there
INHERENT = {
    ("torchrec/distributed/train_pipeline/runtime_forwards.py", "KJTAllToAllForward.__call__"): (
        "torchrec's input distribution turns the KJT's host-side splits into tensors"
    ),
    ("torchrec/distributed/embedding_sharding.py", "FusedKJTListSplitsAwaitable.__init__"): (
        "torchrec checks the splits it sends for int overflow"
    ),
    ("torchrec/distributed/dist_data.py", "_safe_tolist_2d"): (
        "torchrec reads the splits the all-to-all received"
    ),
    ("torchrec/distributed/dist_data.py", "_get_recat"): ("torchrec's key permutation"),
    (
        "fbgemm_gpu/split_table_batched_embeddings_ops_training.py",
        "SplitTableBatchedEmbeddingBagsCodegen.forward",
    ): "fbgemm's iteration counter, a host tensor on a GPU too",
    (
        "fbgemm_gpu/split_table_batched_embeddings_ops_training.py",
        "SplitTableBatchedEmbeddingBagsCodegen._generate_vbe_metadata",
    ): "fbgemm moves feature_dims to the host once (a no-op after the first call on a GPU)",
    (
        "fbgemm_gpu/split_table_batched_embeddings_ops_training.py",
        "DenseTableBatchedEmbeddingBagsCodegen._generate_vbe_metadata",
    ): "fbgemm moves feature_dims to the host once (a no-op after the first call on a GPU)",
}
_HELPERS = {"_safe_tolist", "_cuda_to_cpu_safe"}  # torchrec's tolist wrappers: look past them


@dataclass(frozen=True)
class SyncCall:
    name: str
    where: str  # "path/to/module.py:line qualname" of the innermost frame that made the call
    site: tuple[str, str]  # (path, qualname)

    @property
    def inherent(self) -> bool:
        return any(self.site[0].endswith(p) and self.site[1].startswith(q) for p, q in INHERENT)


@dataclass
class SyncLog:
    """Calls by step: `begin(step)` opens a step; calls before the first go to step 0."""

    step: int = 0
    calls: dict[int, Counter[SyncCall]] = field(default_factory=dict)

    def begin(self, step: int) -> None:
        self.step = step

    def add(self, call: SyncCall) -> None:
        self.calls.setdefault(self.step, Counter())[call] += 1

    def ours(self, step: int) -> Counter[SyncCall]:
        """The step's calls that dmmp-rec could avoid (not INHERENT)."""
        return Counter({c: n for c, n in self.calls.get(step, Counter()).items() if not c.inherent})


def _is_mask_index(args: tuple[Any, ...]) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple | list) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _caller(frame: FrameType | None) -> tuple[str, str, int]:
    here = __file__
    while frame is not None:
        code = frame.f_code
        path = code.co_filename
        skip = path == here or "/torch/" in path and "/torchrec/" not in path
        if not skip and code.co_name not in _HELPERS:
            return path, code.co_qualname, frame.f_lineno
        frame = frame.f_back
    return "?", "?", 0


class SyncCounter(TorchFunctionMode):
    """While active (in this thread), every host-sync call is added to `log`."""

    def __init__(self, log: SyncLog) -> None:
        super().__init__()
        self.log = log

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        counted = (
            name in SYNC_METHODS
            or (name in MASK_INDEXING and _is_mask_index(args))
            or (func is torch.tensor)
            or (name == "where" and len(args) == 1 and not kwargs)  # where(cond) is nonzero
        )
        if counted:
            path, qualname, line = _caller(sys._getframe(1))
            short = path.split("site-packages/")[-1]
            self.log.add(SyncCall(name, f"{short}:{line} {qualname}", (short, qualname)))
        return func(*args, **kwargs)
