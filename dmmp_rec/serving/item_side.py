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
        pooled = [bag(v, o) for bag, v, o in zip(self.bags, values, offsets, strict=True)]
        return self.student.item_vector(torch.cat(pooled, dim=1))


def feature_inputs(
    table: pa.Table, specs: list[FeatureSpec], where: str = ""
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per feature (values, bag starts) of `table`'s rows, ids folded by the one id mapping."""
    jts = table_kjt(table, specs, where).to_dict()
    names = [s.name for s in specs]
    return [jts[n].values() for n in names], [jts[n].offsets()[:-1] for n in names]


@torch.no_grad()
def encode_table(
    module: nn.Module, table: pa.Table, specs: list[FeatureSpec], batch_size: int = 4096
) -> np.ndarray:
    """`module`'s float32 output for every row of `table`, in row order."""
    out = []
    for lo in range(0, table.num_rows, batch_size):
        rows = table.slice(lo, batch_size)
        out.append(module(*feature_inputs(rows, specs, f"rows {lo}..")).float().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
