"""The item encoder as one plain-PyTorch module: [i_c, i_v] from item features.

It holds one `nn.EmbeddingBag` per item feature (the trained tables, pooled as configured) and a
deep copy of the trained student, whose own `item_vector` does the math, so the encoder cannot
drift from the model. Input and output as the user side: per feature a 1-D int64 `values` and
B bag starts; output [B, vector_dim]. Export uses it to encode the catalogue with int8 tables
(`dmmp_rec.serving.quantize`) and ships it as item_side.pt2 for items added after export.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.model.student import Student
from dmmp_rec.serving.user_side import _bag
from dmmp_rec.serving.weights import ExportError


class ItemSide(nn.Module):
    """The item encoder [i_c, i_v] as one plain-PyTorch module (see the module docstring).

    Args:
        item (list[FeatureSpec]): the item features, in input order.
        tables (dict[str, torch.Tensor]): trained tables by table name (ExportError when one
            is missing or of the wrong shape).
        student (Student): the trained student; a deep copy on the CPU is kept.
    """

    def __init__(
        self, item: list[FeatureSpec], tables: dict[str, torch.Tensor], student: Student
    ) -> None:
        super().__init__()
        missing = [s.table_name for s in item if s.table_name not in tables]
        if missing:
            raise ExportError(f"the checkpoint lacks tables {missing}")
        self.feature_names = [s.name for s in item]
        self.bags = nn.ModuleList([_bag(s, tables[s.table_name]) for s in item])
        self.student = copy.deepcopy(student).cpu().eval()
        self.requires_grad_(False)

    def forward(self, values: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        """The item vectors of B items.

        Args:
            values (list[torch.Tensor]): per item feature, its ids, 1-D int64.
            offsets (list[torch.Tensor]): per item feature, each item's bag start, [B] int64.

        Returns:
            torch.Tensor: [B, vector_dim]: [i_c, i_v], or i_c for the two-tower baseline.
        """
        pooled = [bag(v, o) for bag, v, o in zip(self.bags, values, offsets, strict=True)]
        return self.student.item_vector(torch.cat(pooled, dim=1))


def feature_inputs(
    table: pa.Table, specs: list[FeatureSpec], where: str = ""
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per feature (values, bag starts) of `table`'s rows, ids folded by the one id mapping.

    Args:
        table (pa.Table): rows of feature columns (Parquet schema).
        specs (list[FeatureSpec]): the features to take, in this order.
        where (str): where the rows come from, for DataError messages.

    Returns:
        tuple[list[torch.Tensor], list[torch.Tensor]]: the encoders' inputs: per feature its
        int64 ids and its [B] bag starts.
    """
    jts = table_kjt(table, specs, where).to_dict()
    names = [s.name for s in specs]
    return [jts[n].values() for n in names], [jts[n].offsets()[:-1] for n in names]


@torch.no_grad()
def encode_table(
    module: nn.Module, table: pa.Table, specs: list[FeatureSpec], batch_size: int = 4096
) -> np.ndarray:
    """`module`'s float32 output for every row of `table`, in row order.

    Args:
        module (nn.Module): an encoder taking (values, offsets), e.g. ItemSide.
        table (pa.Table): rows of feature columns.
        specs (list[FeatureSpec]): the module's features, in its input order.
        batch_size (int): rows per forward call; default 4096.

    Returns:
        np.ndarray: [rows, output width], contiguous float32.
    """
    out = []
    for lo in range(0, table.num_rows, batch_size):
        rows = table.slice(lo, batch_size)
        out.append(module(*feature_inputs(rows, specs, f"rows {lo}..")).float().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
