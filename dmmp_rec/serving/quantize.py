"""int8 row-wise serving tables: `dmmp-rec export --quantize int8`.

Every embedding table of the exported user side and of the item encoder is stored in torch's
own int8 row-wise layout (`quantized::embedding_bag_byte_prepack`: per row D uint8 codes, then
an fp32 scale and an fp32 offset from the row's min and max) and pooled by
`quantized::embedding_bag_byte_rowwise_offsets`. Both ops are in core PyTorch's CPU build and
torch.export keeps them as they are, so the archive still loads and runs with plain PyTorch, and
lookups cost what fp32 `nn.EmbeddingBag` costs (measured: benchmarks/inference.py). A table of
dim D shrinks 4D / (D + 8) times: 2.7x at D = 16, 3.6x at D = 64; the 8 bytes of scale and
offset per row are why no row-wise scheme reaches 4x.

Not chosen: torchrec's QuantEmbeddingBagCollection exports fbgemm ops (a serving process must
load fbgemm_gpu) and pads an int8 row of dim 16 to 32 bytes (2x); int8 codes with fp16 scale
and offset in plain aten ops (3.2x at D = 16) looked rows up 4-9x slower than fp32.

`Int8Export` is what export.py calls: it checks the fp32 serving modules against the training
model, quantizes them, encodes the catalogue with the int8 item encoder, and measures how far
int8 retrieval is from fp32 retrieval (top-k overlap over the same users).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.serving.index import exact_index
from dmmp_rec.serving.item_side import encode_table
from dmmp_rec.serving.manifest import Quantization
from dmmp_rec.serving.requests import UserRequests
from dmmp_rec.serving.retrieve import run_user_side
from dmmp_rec.serving.user_file import load_user_side, save_user_side
from dmmp_rec.serving.weights import ExportError

MODES = ("none", "int8")
OVERLAP_K = 100
CHECK_ITEMS = 256  # catalogue rows the exported item encoder is checked on
ITEM_SIDE_FILE = "item_side.pt2"


class Int8RowwiseBag(nn.Module):
    """`nn.EmbeddingBag(values, offsets)` (sum or mean, B bag starts) over an int8 table.

    Args:
        weight (torch.Tensor): the fp32 table, [rows, dim]; packed to int8 rows with an fp32
            scale and offset each.
        mode (str): "sum" or "mean" (ExportError otherwise).
    """

    packed: torch.Tensor  # buffer

    def __init__(self, weight: torch.Tensor, mode: str) -> None:
        super().__init__()
        if mode not in ("sum", "mean"):
            raise ExportError(f"int8 tables pool by sum or mean, not {mode!r}")
        weight = weight.detach().to(torch.float32).cpu().contiguous()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.mean = mode == "mean"
        self.register_buffer("packed", torch.ops.quantized.embedding_bag_byte_prepack(weight))

    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        # the op pools by sum only: a mean divides by the bag sizes (an empty bag stays zero)
        """Pool each bag of int8 rows, like nn.EmbeddingBag(values, offsets).

        Args:
            values (torch.Tensor): ids, 1-D int64.
            offsets (torch.Tensor): each bag's start in `values`, [B] int64.

        Returns:
            torch.Tensor: [B, embedding_dim] float32; an empty bag pools to zeros.
        """
        pooled = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
            self.packed, values, offsets
        )
        if not self.mean:
            return pooled
        sizes = torch.diff(offsets, append=values.new_full((1,), values.shape[0]))
        return pooled / sizes.clamp(min=1).to(pooled.dtype).unsqueeze(1)

    def dequantized(self) -> torch.Tensor:
        """The float rows the codes stand for: code * scale + offset.

        Returns:
            torch.Tensor: [num_embeddings, embedding_dim] float32.
        """
        d = self.embedding_dim
        scale_offset = self.packed[:, d:].contiguous().view(torch.float32)
        return self.packed[:, :d].float() * scale_offset[:, :1] + scale_offset[:, 1:]


def quantize_bags(module: nn.Module) -> nn.Module:
    """A copy of `module` with every nn.EmbeddingBag replaced by its Int8RowwiseBag.

    Args:
        module (nn.Module): an fp32 serving module (user side or item encoder); not modified.

    Returns:
        nn.Module: the int8 copy.
    """
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.EmbeddingBag):
                parent._modules[name] = Int8RowwiseBag(child.weight, child.mode)
    return module


def table_bytes(module: nn.Module) -> int:
    """Bytes of the embedding tables in `module` (fp32 weights or int8 rows with scales).

    Args:
        module (nn.Module): a serving module.

    Returns:
        int: the sum over its nn.EmbeddingBag and Int8RowwiseBag tables.
    """
    total = 0
    for m in module.modules():
        if isinstance(m, nn.EmbeddingBag):
            total += m.weight.numel() * m.weight.element_size()
        elif isinstance(m, Int8RowwiseBag):
            total += m.packed.numel() * m.packed.element_size()
    return total


def top_k_overlap(
    queries_a: np.ndarray,
    items_a: np.ndarray,
    queries_b: np.ndarray,
    items_b: np.ndarray,
    k: int = OVERLAP_K,
) -> np.ndarray:
    """Per user, the share of exact top-k items that retrieval a and retrieval b have in common.

    Args:
        queries_a (np.ndarray): retrieval a's queries, [U, D].
        items_a (np.ndarray): retrieval a's item vectors, [N, D].
        queries_b (np.ndarray): retrieval b's queries of the same users, [U, D].
        items_b (np.ndarray): retrieval b's vectors of the same items, [N, D].
        k (int): the cut-off, capped at N; default 100.

    Returns:
        np.ndarray: [U] shares in [0, 1].
    """
    k = min(k, len(items_a))
    _, top_a = exact_index(items_a).search(np.ascontiguousarray(queries_a, np.float32), k)
    _, top_b = exact_index(items_b).search(np.ascontiguousarray(queries_b, np.float32), k)
    return np.array([len(np.intersect1d(a, b)) / k for a, b in zip(top_a, top_b, strict=True)])


@dataclass
class Int8Export:
    """The int8 twins of the fp32 user side and item encoder, and what export measures.

    Call `reference`, then `encode_items`, `save_item_side` and `report`, in that order.

    Args:
        fp32_user (nn.Module): the fp32 user side.
        fp32_item (nn.Module): the fp32 item encoder.
        tolerance (float): largest |fp32 module - training model| accepted (ExportError above).
        fp32_queries (np.ndarray | None): set by `reference`: the model's queries at beta 0.
        fp32_vectors (np.ndarray | None): set by `encode_items`: the model's item vectors.
        vectors (np.ndarray | None): set by `encode_items`: the int8 item vectors.
    """

    fp32_user: nn.Module
    fp32_item: nn.Module
    tolerance: float
    user: nn.Module = field(init=False)
    item: nn.Module = field(init=False)
    fp32_queries: np.ndarray | None = None
    fp32_vectors: np.ndarray | None = None
    vectors: np.ndarray | None = None
    _items_sample: pa.Table | None = None

    def __post_init__(self) -> None:
        self.user = quantize_bags(self.fp32_user).eval()
        self.item = quantize_bags(self.fp32_item).eval()

    def reference(
        self,
        requests: UserRequests,
        model_queries: np.ndarray,
        model_gates: np.ndarray,
        batch: int,
        beta: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Check the fp32 user side against the training model, then run the int8 user side.

        The int8 output is what the exported archive must reproduce. The fp32 queries at beta 0
        are kept for the overlap.

        Args:
            requests (UserRequests): the recall users.
            model_queries (np.ndarray): the training model's queries of them, [U, D].
            model_gates (np.ndarray): the training model's gates of them, [U, 2].
            batch (int): users per forward call.
            beta (float): the serving knob; default 0.

        Returns:
            tuple[np.ndarray, np.ndarray]: the int8 user side's (eager) queries [U, D] and gates
            [U, 2].
        """
        queries, gates = run_user_side(self.fp32_user, requests, batch, beta)
        _check("fp32 user side", queries, gates, model_queries, model_gates, self.tolerance)
        if beta == 0.0:
            self.fp32_queries = model_queries
        return run_user_side(self.user, requests, batch, beta)

    def encode_items(
        self, items: pa.Table, specs: list[FeatureSpec], model_vectors: np.ndarray, batch: int
    ) -> np.ndarray:
        """The catalogue's vectors through the int8 item encoder, after checking the fp32 encoder.

        Args:
            items (pa.Table): the catalogue's item feature rows.
            specs (list[FeatureSpec]): the item features, in the encoder's input order.
            model_vectors (np.ndarray): the training model's item vectors, [N, D]; the fp32
                encoder must match them within `tolerance`.
            batch (int): rows per forward call.

        Returns:
            np.ndarray: the int8 item vectors, [N, D] float32.
        """
        fp32 = encode_table(self.fp32_item, items, specs, batch)
        _check("fp32 item encoder", fp32, None, model_vectors, None, self.tolerance)
        self.fp32_vectors = model_vectors
        self.vectors = encode_table(self.item, items, specs, batch)
        self._items_sample = items.slice(0, CHECK_ITEMS)
        return self.vectors

    def save_item_side(self, root: Path, specs: list[FeatureSpec]) -> str:
        """Export the int8 item encoder; it must reproduce the int8 vectors of the first items.

        Args:
            root (Path): the export directory.
            specs (list[FeatureSpec]): the item features, in the encoder's input order.

        Returns:
            str: the archive's file name, relative to `root` (item_side.pt2).
        """
        if self.vectors is None:
            raise ExportError("Int8Export.save_item_side needs encode_items() first")
        path = root / ITEM_SIDE_FILE
        save_user_side(self.item, [s.cardinality for s in specs], path, knob=False)
        got = encode_table(load_user_side(path), self._items_sample, specs)
        _check("exported item encoder", got, None, self.vectors[: len(got)], None, self.tolerance)
        return ITEM_SIDE_FILE

    def report(self, queries: np.ndarray) -> Quantization:
        """Table bytes and agreement with fp32 of the exported int8 queries (same users).

        Args:
            queries (np.ndarray): the exported int8 user side's queries at beta 0, [U, D].

        Returns:
            Quantization: the manifest's quantization record.
        """
        if self.fp32_queries is None or self.fp32_vectors is None or self.vectors is None:
            raise ExportError("Int8Export.report needs reference() and encode_items() first")
        overlap = top_k_overlap(self.fp32_queries, self.fp32_vectors, queries, self.vectors)
        return Quantization(
            tables="int8_rowwise",
            table_bytes={"user_side": table_bytes(self.user), "item_side": table_bytes(self.item)},
            fp32_table_bytes={
                "user_side": table_bytes(self.fp32_user),
                "item_side": table_bytes(self.fp32_item),
            },
            top_k=min(OVERLAP_K, len(self.vectors)),
            users=len(queries),
            top_k_overlap_mean=round(float(overlap.mean()), 6),
            top_k_overlap_min=round(float(overlap.min()), 6),
            query_max_abs_diff=float(np.abs(queries - self.fp32_queries).max()),
        )


def _check(
    what: str,
    got: np.ndarray,
    got_gates: np.ndarray | None,
    want: np.ndarray,
    want_gates: np.ndarray | None,
    tolerance: float,
) -> None:
    diff = float(np.abs(got - want).max())
    if got_gates is not None and want_gates is not None:
        diff = max(diff, float(np.abs(got_gates - want_gates).max()))
    if not diff <= tolerance:
        raise ExportError(f"{what} differs from the training model by {diff:.2e}")
