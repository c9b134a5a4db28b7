"""The teacher as a brute-force full-catalogue retriever, against the student on the same users.

Distillation can pass on at most what the teacher knows: ranking every item of the catalogue
by the teacher's pCTCVR for a user is the ceiling the conversion side of the student learns
towards. It costs a teacher forward per (user, item) pair, 50k pairs per user on the default
world, so it runs on a seeded subset of the ground-truth sample (`teacher_users`), and the
student's rankings are measured again on exactly those users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data.pair_features import PairFeatures
from dmmp_rec.eval import ranking

_ITEM_CHUNK = 16384  # pairs per teacher call

CrossOf = Callable[[int], torch.Tensor]  # user id -> pooled cross features [n_items, D_cross]


class PairCross:
    """The teacher's cross input for one user against every catalogue item: the pair's cross
    ids from the data's pair features, and each id's pooled embedding from the shared EBC
    (every row of the small cross tables looked up once; single-valued features pool to
    their row)."""

    def __init__(
        self,
        model: Any,  # a DMMPModel (or a DMP's module): its sparse arch pools the cross ids
        features: FeaturesConfig,
        source: PairFeatures,
        item_ids: np.ndarray,
        device: torch.device,
    ) -> None:
        specs = features.group("cross")
        if any(s.multi_valued for s in specs):
            raise ValueError("teacher retrieval supports single-valued cross features only")
        rows = max(s.cardinality for s in specs)
        kjt = KeyedJaggedTensor(
            keys=[s.name for s in specs],
            values=torch.cat([torch.arange(rows) % s.cardinality for s in specs]),
            lengths=torch.ones(rows * len(specs), dtype=torch.int32),
        ).to(device)
        with torch.no_grad():
            pooled = model.sparse.lookup(kjt, ("cross",))["cross"]
        self.tables, start = [], 0
        for s in specs:
            self.tables.append(pooled[: s.cardinality, start : start + s.dim])
            start += s.dim
        self.names = [s.name for s in specs]
        self.source = source
        self.item_ids = item_ids

    def __call__(self, user_id: int) -> torch.Tensor:
        ids = self.source(np.full(len(self.item_ids), user_id), self.item_ids)
        return torch.cat(
            [t[torch.from_numpy(ids[n])] for t, n in zip(self.tables, self.names, strict=True)],
            dim=1,
        )


@torch.no_grad()
def teacher_top_k(
    model: Any,  # a DMMPModel (or a DMP's module): its teacher ranks the pairs
    users: dict[str, np.ndarray],
    items: dict[str, np.ndarray],
    k: int,
    device: torch.device,
    user_ids: np.ndarray | None = None,
    cross_of: CrossOf | None = None,
) -> np.ndarray:
    """Rows [n_users, k] of the k catalogue items of highest teacher pCTCVR for each user;
    `users` holds the pooled user (and context) embeddings, `items` the pooled item ones;
    with cross features, `cross_of(user_ids[r])` gives the pairs' cross input.

    The teacher's first layers are linear in its input blocks (teacher.FirstLayer): the items'
    share is computed once for the whole catalogue and each user's once, so a pair costs the
    layers above the first."""
    teacher = model.dense.teacher
    first = teacher.first_layer()
    item_part = first.partial({"item": torch.from_numpy(items["item"]).to(device)})
    out = np.empty((len(users["user"]), k), dtype=np.int64)
    for r in range(len(users["user"])):
        row = {"user": torch.from_numpy(users["user"][r : r + 1]).to(device)}
        if users.get("context") is not None:
            row["context"] = torch.from_numpy(users["context"][r : r + 1]).to(device)
        row_part = first.partial(row) + first.bias
        cross = None
        if cross_of is not None:
            assert user_ids is not None
            cross = cross_of(int(user_ids[r])).to(device)
        scores = []
        for lo in range(0, item_part.shape[0], _ITEM_CHUNK):
            pre = row_part + item_part[lo : lo + _ITEM_CHUNK]
            if cross is not None:
                pre = pre + first.partial({"cross": cross[lo : lo + _ITEM_CHUNK]})
            scores.append(teacher.from_first_layer(pre).pctcvr.float().cpu().numpy())
        out[r] = ranking.top_k(np.concatenate(scores)[None, :], k)[0]
    return out


def teacher_subset(sample: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subset of `n` of the sample's users (sorted)."""
    n = min(n, len(sample))
    rng = np.random.default_rng([seed, 2])
    return np.sort(sample[rng.choice(len(sample), n, replace=False)])
