"""The one shared sparse layer: a single EmbeddingBagCollection for every feature's table.

Teacher and student towers read the same pooled embeddings, so the EBC is called exactly once per
training forward (TrainPipelineSparseDist refuses a module called twice, and the planner would plan
two module paths twice). Its pooled KeyedTensor is split here into one dense tensor per feature
group. Retrieval looks up only one side's features through the same EBC, by padding the other
keys with empty bags (length 0), so the EBC stays one module and one call, sharded or not.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config.features import GROUPS, FeaturesConfig, Group
from dmmp_rec.model.managed_ids import ManagedIds

# Where the EBC lives in DMMPModel (`model.sparse` is this arch, which holds it at `ebc`): the
# module path that sharding plans and state_dict keys name. The planner and the export read it
# from here rather than spelling it out.
EBC_PATH = "sparse.ebc"


class SharedSparseArch(nn.Module):
    """Holds the EBC at attribute `ebc`; returns the pooled embeddings of each non-empty group.

    With `candidates` > 0 it also returns the cross features of the R in-batch candidate pairs as
    groups `cross@1` .. `cross@R` (their keys share the cross tables).

    Args:
        features (FeaturesConfig): the feature schema (one table per feature).
        device (torch.device | str): where the EBC is created ("meta" before sharding);
            default "cpu".
        candidates (int): R, the candidate pairs whose cross features each batch carries;
            default 0.
        managed_device (torch.device | str | None): where the managed-id remapper's buffers
            live (a real device even when the EBC starts on meta); None: `device`.
    """

    def __init__(
        self,
        features: FeaturesConfig,
        device: torch.device | str = "cpu",
        candidates: int = 0,
        managed_device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        # features with `ids: managed` are remapped before the EBC (dmmp_rec.model.managed_ids);
        # its state is buffers, so it lives on a real device even when the EBC starts on meta
        managed = features.managed_specs
        self.managed: ManagedIds | None = (
            ManagedIds(managed, managed_device if managed_device is not None else device)
            if managed
            else None
        )
        self.ebc = EmbeddingBagCollection(
            tables=features.embedding_bag_configs(candidates), device=torch.device(device)
        )
        self.feature_names: list[str] = features.keys(candidates)
        self.group_features: dict[str, list[str]] = {
            g: [s.name for s in features.group(g)] for g in GROUPS if features.group(g)
        }
        for r, names in enumerate(features.candidate_names(candidates), start=1):
            self.group_features[f"cross@{r}"] = names
        self.group_dims: dict[str, int] = {g: features.group_dim(g) for g in GROUPS}

    def forward(self, features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        """Pooled embeddings by group from one EBC call (managed ids remapped first).

        FX-traceable: under TrainPipelineSparseDist the `ebc` call is found by tracing and
        pipelined.

        Args:
            features (KeyedJaggedTensor): every feature key in schema order (`feature_names`),
                managed features as raw ids.

        Returns:
            dict[str, torch.Tensor]: group name ("user", "item", "context", "cross", "cross@r")
            -> [B, group width], for each group with features.
        """
        if self.managed is not None:
            features = self.managed(features)
        pooled = self.ebc(features).to_dict()  # a sharded EBC's awaitable resolves on access
        return {
            group: torch.cat([pooled[name] for name in names], dim=1)
            for group, names in self.group_features.items()
        }

    def lookup(
        self, features: KeyedJaggedTensor, groups: tuple[Group, ...]
    ) -> dict[str, torch.Tensor]:
        """Pooled embeddings of `groups` from a KJT that may hold only those groups' keys.

        Missing keys of other groups are padded with empty bags, so one side (user or item) is
        looked
        up through the same EBC.

        Args:
            features (KeyedJaggedTensor): at least every key of `groups`; no key outside the
                schema (either raises ValueError naming the keys).
            groups (tuple[Group, ...]): the groups wanted, e.g. ("user", "context").

        Returns:
            dict[str, torch.Tensor]: each wanted group that has features -> [B, group width].
        """
        needed = [n for g in groups for n in self.group_features.get(g, [])]
        have = set(features.keys())
        missing = [n for n in needed if n not in have]
        if missing:
            raise ValueError(
                f"features for {'/'.join(groups)} lack keys {missing}; got {sorted(have)}"
            )
        unknown = sorted(have - set(self.feature_names))
        if unknown:
            raise ValueError(f"unknown feature keys {unknown}; known: {self.feature_names}")
        pooled = self(self.pad(features))
        return {g: pooled[g] for g in groups if g in pooled}

    def pad(self, features: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """The same rows with every feature key in schema order; absent keys get empty bags.

        Args:
            features (KeyedJaggedTensor): a subset of the schema's keys, any order.

        Returns:
            KeyedJaggedTensor: keys `feature_names`, int32 lengths; `features` itself when it
            already
            has exactly those keys in that order.
        """
        if list(features.keys()) == self.feature_names:
            return features
        batch = features.stride()
        jts = features.to_dict()
        values, lengths = [], []
        ref = features.values()
        for name in self.feature_names:
            if name in jts:
                values.append(jts[name].values())
                lengths.append(jts[name].lengths())
            else:
                values.append(ref.new_zeros(0))
                lengths.append(torch.zeros(batch, dtype=torch.int32, device=ref.device))
        return KeyedJaggedTensor(
            keys=self.feature_names,
            values=torch.cat(values),
            lengths=torch.cat([length.to(torch.int32) for length in lengths]),
        )
