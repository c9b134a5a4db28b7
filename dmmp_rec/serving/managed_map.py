"""Serving's side of managed collisions: raw ids -> the rows training gave them.

Export writes the trained remapping state of the user-side managed features (torchrec MCH
buffers: the admitted raw ids, their rows and the policy's counters) to `managed_ids.npz`;
retrieval loads it into the very module training used (`dmmp_rec.model.managed_ids.ManagedIds`,
in eval mode: lookups only, nothing admitted or evicted at serving) and replaces the raw ids
of those features by their rows before the exported user side runs. An id training never
admitted, or evicted since, takes the table's last row, exactly as in validation.
No pickle: an .npz of int64 arrays, read with allow_pickle=False.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dmmp_rec.model.managed_ids import ManagedIds
from dmmp_rec.serving.manifest import UserFeature
from dmmp_rec.serving.requests import UserRequests
from dmmp_rec.serving.weights import ExportError

MANAGED_FILE = "managed_ids.npz"


def _tables_prefix(name: str) -> str:
    return f"mcc._managed_collision_modules.t_{name}."


def managed_features(features: list[UserFeature]) -> list[UserFeature]:
    """The user-side features with `ids: managed`, in manifest order.

    Args:
        features (list[UserFeature]): the manifest's user-side features.

    Returns:
        list[UserFeature]: those whose ids are managed.
    """
    return [f for f in features if f.ids == "managed"]


def save_managed(trained: ManagedIds | None, features: list[UserFeature], out: Path) -> bool:
    """Write the user-side managed tables' state to `out`/managed_ids.npz.

    Args:
        trained (ManagedIds | None): the trained model's remapper; None when it has none
            (ExportError if the manifest has managed features all the same).
        features (list[UserFeature]): the manifest's user-side features.
        out (Path): the export directory.

    Returns:
        bool: True when the file was written; False (nothing written) when no user-side
        feature is managed.
    """
    managed = managed_features(features)
    if not managed:
        return False
    if trained is None:
        raise ExportError("the manifest has managed user features but the model has no remapping")
    prefixes = tuple(_tables_prefix(f.name) for f in managed)
    state = {k: v.cpu().numpy() for k, v in trained.state_dict().items() if k.startswith(prefixes)}
    np.savez(out / MANAGED_FILE, **state)
    return True


class ServingIdMap:
    """The remapping of the user-side managed features, loaded from an export.

    Args:
        features (list[UserFeature]): the manifest's user-side features.
        path (Path): the export's managed_ids.npz (ExportError when it does not match them).
    """

    def __init__(self, features: list[UserFeature], path: Path) -> None:
        managed = managed_features(features)
        self.module = ManagedIds([f.spec() for f in managed])
        with np.load(path, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(npz[k]) for k in npz.files}
        try:
            self.module.load_state_dict(state)
        except RuntimeError as e:
            message = f"{path}: does not match the manifest's managed features: {e}"
            raise ExportError(message) from None
        self.module.eval()

    def apply(self, requests: UserRequests) -> UserRequests:
        """`requests` with the managed features' raw ids replaced by their rows.

        Args:
            requests (UserRequests): parsed requests holding raw ids.

        Returns:
            UserRequests: a copy; ids training never admitted (or evicted) get the table's last row.
        """
        values = list(requests.values)
        for j, feature in enumerate(requests.features):
            if feature.ids == "managed" and values[j].size:
                rows = self.module.rows(feature.name, torch.from_numpy(values[j]))
                values[j] = rows.numpy().astype(np.int64)
        return replace(requests, values=values)
