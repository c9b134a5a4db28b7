"""Top-K retrieval over an export directory, with each user's scores and gate explained.

The exported user side turns user features into (query, gate); one inner-product search over
the item vectors gives the fused score f = <query, [i_c, i_v]>. Click and conversion scores are
recomputed for the K items from the same vectors: because g_c + g_v = 1, the two query halves
sum to u / tau, so s_c = <u / tau, i_c> and s_v = <u / tau, i_v> without dividing by a gate.
Nothing is loaded by pickle: JSON manifest, .npy with allow_pickle=False, FAISS binary, and a
torch.export archive checked to be pickle-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import pyarrow.parquet as pq
import torch

from dmmp_rec.config.base import ConfigError
from dmmp_rec.data.catalogue import USERS_FILE
from dmmp_rec.errors import InputError
from dmmp_rec.serving.managed_map import ServingIdMap, managed_features
from dmmp_rec.serving.manifest import Manifest, UserFeature, read_manifest
from dmmp_rec.serving.requests import UserRequests, parse_table
from dmmp_rec.serving.user_file import load_user_side

IndexKind = Literal["exact", "approx"]


@dataclass(frozen=True)
class Candidate:
    """One retrieved item and its scores.

    Args:
        item (int): the item's id (item_id_feature's value).
        fused (float): the fused score <query, [i_c, i_v]>.
        click (float): s_c = <u, i_c> / tau.
        conversion (float): s_v = <u, i_v> / tau.
    """

    item: int
    fused: float
    click: float
    conversion: float


@dataclass(frozen=True)
class UserResult:
    """One user's top-k and gate.

    Args:
        label (str): where the user came from ("line 3", "row 2", "user 17").
        gate_click (float): g_c at the requested beta.
        gate_conversion (float): g_v = 1 - g_c.
        candidates (list[Candidate]): the top-k, best first.
        folded (dict[str, int]): out-of-range ids folded by hash, per feature.
    """

    label: str
    gate_click: float
    gate_conversion: float
    candidates: list[Candidate]
    folded: dict[str, int]

    def leaning(self) -> str:
        """The gate in words.

        Returns:
            str: e.g. "leans 70% conversion" (the larger side; conversion on a tie).
        """
        if self.gate_conversion >= self.gate_click:
            return f"leans {self.gate_conversion:.0%} conversion"
        return f"leans {self.gate_click:.0%} click"

    def to_dict(self) -> dict:
        """One JSON line of `dmmp-rec retrieve`'s output.

        Returns:
            dict: user, gate, leaning, items (each Candidate's fields) and folded_ids (when any).
        """
        return {
            "user": self.label,
            "gate": {"click": self.gate_click, "conversion": self.gate_conversion},
            "leaning": self.leaning(),
            "items": [c.__dict__ for c in self.candidates],
            **({"folded_ids": self.folded} if self.folded else {}),
        }


def run_user_side(
    module: Callable, requests: UserRequests, batch_size: int = 4096, beta: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Queries and gates as float32 numpy from the exported user side, batch by batch.

    Args:
        module (Callable): the user side, called as module(values, offsets, beta).
        requests (UserRequests): the users (ids already mapped for managed features).
        batch_size (int): users per call; default 4096.
        beta (float): the serving knob: > 0 leans every user's gate towards conversions, < 0
            towards clicks, 0 (default) is the gate as trained; +-inf allowed.

    Returns:
        tuple[np.ndarray, np.ndarray]: queries [B, D] and gates [B, 2].
    """
    queries, gates = [], []
    knob = torch.tensor([beta], dtype=torch.float32)
    with torch.no_grad():
        for lo in range(0, len(requests), batch_size):
            q, g = module(*requests.batch(lo, min(len(requests), lo + batch_size)), knob)
            queries.append(q.numpy())
            gates.append(g.numpy())
    return np.concatenate(queries), np.concatenate(gates)


def _load_npy(path: Path, manifest_path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError("files", f"cannot read {path.name}: {e}", str(manifest_path)) from None


class Retriever:
    """An export directory loaded for serving: user side, item vectors and ids, one index.

    Every file's size is checked against the manifest first (ConfigError naming the role).

    Args:
        export_dir (str | Path): the export directory.
        index (IndexKind): "exact" (default) or "approx" (HNSW at the manifest's efSearch).

    Example::

        retriever = Retriever("runs/export", index="approx")
        requests = read_requests("users.jsonl", retriever.features)
        for user in retriever.search(requests, k=100, beta=0.5):  # lean to conversions
            print(user.label, user.leaning(), [c.item for c in user.candidates[:5]])
    """

    def __init__(self, export_dir: str | Path, index: IndexKind = "exact") -> None:
        self.root = Path(export_dir)
        self.manifest: Manifest = read_manifest(self.root)
        where = str(self.root / "manifest.json")
        for role, entry in self.manifest.files.items():
            path = self.root / entry.path
            size = path.stat().st_size if path.is_file() else None
            if size != entry.bytes:
                found = "missing" if size is None else f"{size} bytes"
                raise ConfigError(
                    f"files.{role}", f"{entry.path}: {found}, expected {entry.bytes}", where
                )
        self.user_side = load_user_side(self.manifest.file(self.root, "user_side"))
        self.item_vectors = _load_npy(self.manifest.file(self.root, "item_vectors"), Path(where))
        self.item_ids = _load_npy(self.manifest.file(self.root, "item_ids"), Path(where))
        m = self.manifest
        shapes = (self.item_vectors.shape, self.item_ids.shape)
        if shapes != ((m.num_items, m.vector_dim), (m.num_items,)):
            raise ConfigError(
                "num_items",
                f"item vectors and ids have shapes {shapes}, expected "
                f"({m.num_items}, {m.vector_dim}) and ({m.num_items},)",
                where,
            )
        self.index = faiss.read_index(str(self.manifest.file(self.root, index)))
        if index == "approx":
            hnsw: Any = faiss.downcast_index(self.index)  # faiss's partial types miss .hnsw
            hnsw.hnsw.efSearch = self.manifest.approx.ef_search
        self.index_kind = index
        # managed features: raw ids -> the rows training gave them (dmmp_rec.serving.managed_map)
        self.id_map = (
            ServingIdMap(m.user_features, m.file(self.root, "managed_ids"))
            if managed_features(m.user_features)
            else None
        )

    @property
    def features(self) -> list[UserFeature]:
        return self.manifest.user_features

    def encode(
        self, requests: UserRequests, batch_size: int = 4096, beta: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Queries and gates of `requests` from the exported user side, managed ids mapped first.

        Args:
            requests (UserRequests): the users.
            batch_size (int): users per call; default 4096.
            beta (float): the serving knob: > 0 leans every user's gate towards conversions, < 0
                towards clicks, 0 (default) is the gate as trained; +-inf allowed.

        Returns:
            tuple[np.ndarray, np.ndarray]: queries [B, D] and gates [B, 2], float32.
        """
        if self.id_map is not None:
            requests = self.id_map.apply(requests)
        return run_user_side(self.user_side, requests, batch_size, beta)

    def search(
        self, requests: UserRequests, k: int, batch_size: int = 4096, beta: float = 0.0
    ) -> list[UserResult]:
        """Top-k items per user, with their click and conversion scores and the user's gate.

        Args:
            requests (UserRequests): the users.
            k (int): items per user, >= 1 (InputError otherwise); capped at the catalogue size.
            batch_size (int): users per user-side call; default 4096.
            beta (float): the serving knob: > 0 leans every user's gate towards conversions, < 0
                towards clicks, 0 (default) is the gate as trained; +-inf allowed. NaN is an
                InputError.

        Returns:
            list[UserResult]: one per user, in request order.
        """
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if math.isnan(beta):
            raise InputError("beta (--conversion-shift) must be a number, got nan")
        k = min(k, self.manifest.num_items)
        queries, gates = self.encode(requests, batch_size, beta)
        fused, rows = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        d = self.manifest.tower_dim
        two_tower = self.manifest.vector_dim == d
        user = queries if two_tower else queries[:, :d] + queries[:, d:]  # u / tau
        results = []
        for b in range(len(requests)):
            hit = rows[b] >= 0
            found = rows[b][hit]
            vecs = self.item_vectors[found]
            s_c = vecs[:, :d] @ user[b]
            s_v = s_c if two_tower else vecs[:, d:] @ user[b]
            candidates = [
                Candidate(int(self.item_ids[r]), float(f), float(c), float(v))
                for r, f, c, v in zip(found, fused[b][hit], s_c, s_v, strict=True)
            ]
            results.append(
                UserResult(
                    requests.labels[b],
                    float(gates[b, 0]),
                    float(gates[b, 1]),
                    candidates,
                    requests.folded_for(b),
                )
            )
        return results


DEMO_POOL = 2000  # users scored to choose demo users from


def demo_users(retriever: Retriever, n: int, seed: int = 0) -> UserRequests:
    """`n` users of the export's world spread over the gate's range, click-leaning first.

    From the most click-leaning to the most conversion-leaning of up to 2000 users drawn from
    users.parquet, so the demo shows what the gate does.

    Args:
        retriever (Retriever): the loaded export (its data_path holds users.parquet).
        n (int): users wanted (fewer when gate values coincide); at least 1 is returned.
        seed (int): seed of the draw; default 0.

    Returns:
        UserRequests: the chosen users, labelled by their first feature's value.
    """
    path = Path(retriever.manifest.data_path) / USERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no user catalogue for --demo-users; pass --users FILE")
    names = [f.name for f in retriever.features]
    table = pq.read_table(path, columns=names)
    pool = np.sort(np.random.default_rng(seed).permutation(table.num_rows)[:DEMO_POOL])
    table = table.take(pool)
    _, gates = retriever.encode(parse_table(table, retriever.features, str(path)))
    order = np.argsort(gates[:, 1], kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, max(1, n)).round().astype(int))]
    chosen = table.take(picks)  # click-leaning first
    requests = parse_table(chosen, retriever.features, str(path))
    first = chosen.column(0).to_pylist()
    return replace(requests, labels=[f"{names[0]} {v}" for v in first])
