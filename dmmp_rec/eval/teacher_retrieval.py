"""The teacher as a brute-force full-catalogue retriever, against the student on the same users.

Distillation can pass on at most what the teacher knows: ranking every item of the catalogue
by the teacher's pCTCVR for a user is the ceiling the conversion side of the student learns
towards. It costs a teacher forward per (user, item) pair, 50k pairs per user on the default
world, so it runs on a seeded subset of the ground-truth sample (`teacher_users`), and the
student's rankings are measured again on exactly those users.
"""

from __future__ import annotations

import numpy as np
import torch

from dmmp_rec.eval import ranking

_ITEM_CHUNK = 16384  # pairs per teacher call


@torch.no_grad()
def teacher_top_k(
    model: torch.nn.Module,
    users: dict[str, np.ndarray],
    items: dict[str, np.ndarray],
    k: int,
    device: torch.device,
) -> np.ndarray:
    """Rows [n_users, k] of the k catalogue items of highest teacher pCTCVR for each user;
    `users` holds the pooled user (and context) embeddings, `items` the pooled item ones."""
    teacher = model.dense.teacher  # type: ignore[attr-defined]
    item = torch.from_numpy(items["item"]).to(device)
    n_items = item.shape[0]
    out = np.empty((len(users["user"]), k), dtype=np.int64)
    for r in range(len(users["user"])):
        row = [torch.from_numpy(users["user"][r : r + 1]).to(device)]
        ctx = users.get("context")
        scores = []
        for lo in range(0, n_items, _ITEM_CHUNK):
            chunk = item[lo : lo + _ITEM_CHUNK]
            parts = [row[0].expand(len(chunk), -1), chunk]
            if ctx is not None:
                parts.append(torch.from_numpy(ctx[r : r + 1]).to(device).expand(len(chunk), -1))
            scores.append(teacher(torch.cat(parts, dim=1)).pctcvr.float().cpu().numpy())
        out[r] = ranking.top_k(np.concatenate(scores)[None, :], k)[0]
    return out


def teacher_subset(sample: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subset of `n` of the sample's users (sorted)."""
    n = min(n, len(sample))
    rng = np.random.default_rng([seed, 2])
    return np.sort(sample[rng.choice(len(sample), n, replace=False)])
