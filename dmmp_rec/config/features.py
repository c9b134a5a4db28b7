"""The sparse-feature schema: one table per feature, grouped into user, item, context and cross.

The schema is the single source of the EmbeddingBagConfigs, the KeyedJaggedTensor key order and
the Parquet column names, so the loader, the model and the sharding planner can never disagree.

`cross` features describe a (user, item) pair (how often the user's history touches this item's
category, ...). Only the teacher reads them: a retrieval tower sees one side only, so a pair
feature cannot enter it, and distillation is how what they tell the teacher reaches retrieval.
For the in-batch candidate pairs the teacher also scores, each cross feature gets R extra keys
`<name>@<r>` (the row's user with the item of the row r places before it), which share the
feature's table: one EBC, one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType

from dmmp_rec.config.base import require

Group = Literal["user", "item", "context", "cross"]
GROUPS: tuple[Group, ...] = ("user", "item", "context", "cross")
STUDENT_GROUPS: tuple[Group, ...] = ("user", "item", "context")  # what a retrieval tower may read


def candidate_name(name: str, shift: int) -> str:
    """The KJT key of cross feature `name` for the candidate pair at batch shift `shift`.

    Args:
        name (str): a cross feature's name.
        shift (int): r, the candidate pair's batch shift, >= 1.

    Returns:
        str: "<name>@<shift>".
    """
    return f"{name}@{shift}"


EvictionPolicyName = Literal["lfu", "lru", "distance_lfu"]


@dataclass
class ManagedIdsSpec:
    """Managed collisions for one table (torchrec's MCHManagedCollisionModule) (`managed:`).

    Raw ids are admitted into rows by the eviction policy instead of folded by a hash. Admission
    of new ids happens only at an eviction, so an interval of 1 admits a new id on the step it
    first appears. Defaults chosen on the validation day (docs/ids.md): the lowest collision rate
    of torchrec's three policies, and 50 steps, which collides no more than 1 and costs a
    fraction of its per-step bookkeeping.

    Args:
        eviction_policy (str): "lfu", "lru" or "distance_lfu" (default).
        eviction_interval (int): training steps between evictions (and admissions), >= 1;
            default 50.
    """

    eviction_policy: EvictionPolicyName = "distance_lfu"
    eviction_interval: int = 50

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        require(
            self.eviction_interval >= 1,
            f"{path}.eviction_interval",
            f"must be >= 1, got {self.eviction_interval}",
        )


@dataclass
class FeatureSpec:
    """One sparse feature and its embedding table (an entry of `features.<group>:`).

    Args:
        name (str): a Python identifier, unique over all groups; the Parquet column and KJT
            key. Its table is `t_<name>`.
        cardinality (int): rows of the table, > 0 (>= 2 for managed ids: the last row takes
            ids not admitted yet). Required.
        dim (int): embedding width, > 0. Required.
        pooling (str): "sum" (default) or "mean" over a bag.
        multi_valued (bool): a row holds a list of ids (a bag) rather than one; default false.
        out_of_range (str): what an id outside [0, cardinality) does: "hash" (default) folds it
            into rows 1..cardinality-1 by SplitMix64 (counted; the one mapping of
            dmmp_rec.data.id_policy, from conversion to serving); "error" stops, naming the
            feature, file and row.
        ids (str): "hash" (default): ids are folded as `out_of_range` says; "managed": raw ids
            of any 64-bit value are remapped by torchrec's managed collisions
            (dmmp_rec.model.managed_ids) with the policy in `managed`, trained, checkpointed and
            served as one state. Cross features must keep "hash".
        managed (ManagedIdsSpec): the managed-collision settings, read when ids is "managed".
    """

    name: str
    cardinality: int
    dim: int
    pooling: Literal["sum", "mean"] = "sum"
    multi_valued: bool = False
    out_of_range: Literal["hash", "error"] = "hash"
    ids: Literal["hash", "managed"] = "hash"
    managed: ManagedIdsSpec = field(default_factory=ManagedIdsSpec)
    group: Group = field(default="user", init=False)

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        require(
            bool(self.name) and self.name.isidentifier(),
            f"{path}.name",
            f"feature name must be an identifier, got {self.name!r}",
        )
        require(
            self.cardinality > 0,
            f"{path}.cardinality",
            f"cardinality must be > 0, got {self.cardinality}",
        )
        require(self.dim > 0, f"{path}.dim", f"dim must be > 0, got {self.dim}")
        require(
            self.ids == "hash" or self.cardinality >= 2,
            f"{path}.cardinality",
            "a managed table needs >= 2 rows (its last row takes ids not admitted yet)",
        )

    @property
    def table_name(self) -> str:
        return f"t_{self.name}"

    def embedding_bag_config(self, candidates: int = 0) -> EmbeddingBagConfig:
        """Its table; a cross feature's table also serves its `candidates` candidate keys.

        Args:
            candidates (int): R, candidate pairs per row whose cross keys share this table; 0 for
                none (non-cross features ignore it).

        Returns:
            EmbeddingBagConfig: table `t_<name>`, cardinality x dim, pooled as configured.
        """
        extra = [candidate_name(self.name, r) for r in range(1, candidates + 1)]
        return EmbeddingBagConfig(
            name=self.table_name,
            embedding_dim=self.dim,
            num_embeddings=self.cardinality,
            feature_names=[self.name, *(extra if self.group == "cross" else [])],
            pooling=PoolingType.SUM if self.pooling == "sum" else PoolingType.MEAN,
        )


@dataclass
class FeaturesConfig:
    """Features by group (`features:`); KJT key order is user, item, context, then cross.

    Args:
        user (list[FeatureSpec]): user features, non-empty; read by the teacher, the user
            tower and the gate. Required.
        item (list[FeatureSpec]): item features, non-empty; read by the teacher and the item
            towers. Required.
        context (list[FeatureSpec] | None): context features (the request's), non-empty when
            given; read by the teacher and the user tower. Default null: none.
        cross (list[FeatureSpec] | None): (user, item) pair features, non-empty when given,
            ids "hash"; read by the teacher only. Default null: none.
    """

    user: list[FeatureSpec]
    item: list[FeatureSpec]
    context: list[FeatureSpec] | None = None
    cross: list[FeatureSpec] | None = None

    def validate(self, path: str) -> None:
        """Check names and groups on load, and set each feature's `group`.

        Feature names must be unique over all groups, no group given may be empty, and cross
        features keep `ids: hash`. An omitted context or cross group becomes an empty list.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        seen: dict[str, str] = {}
        for group in GROUPS:
            specs = getattr(self, group)
            if specs is None:
                continue
            require(len(specs) > 0, f"{path}.{group}", "empty feature group")
            for i, spec in enumerate(specs):
                spec.group = group
                where = f"{path}.{group}.{i}.name"
                require(
                    spec.name not in seen,
                    where,
                    f"feature {spec.name!r} is in two groups ({seen.get(spec.name)} and {group})"
                    if seen.get(spec.name) != group
                    else f"feature {spec.name!r} is listed twice in group {group}",
                )
                seen[spec.name] = group
                require(
                    group != "cross" or spec.ids == "hash",
                    f"{path}.{group}.{i}.ids",
                    "cross features are small pair counts: keep ids: hash (managed collisions "
                    "are for id features)",
                )
        if self.context is None:
            self.context = []
        if self.cross is None:
            self.cross = []

    def group(self, name: Group) -> list[FeatureSpec]:
        """The features of one group (empty for an omitted group).

        Args:
            name (Group): "user", "item", "context" or "cross".

        Returns:
            list[FeatureSpec]: a new list, in config order.
        """
        return list(getattr(self, name) or [])

    @property
    def all(self) -> list[FeatureSpec]:
        """Every feature in KeyedJaggedTensor key order: user, item, context, then cross."""
        return [s for g in GROUPS for s in self.group(g)]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.all]

    def candidate_names(self, candidates: int) -> list[list[str]]:
        """Per shift r = 1..candidates, the keys of the cross features of candidate pairs.

        Args:
            candidates (int): R, candidate pairs per row.

        Returns:
            list[list[str]]: R lists of "<name>@<r>" keys; empty without cross features.
        """
        cross = [s.name for s in self.group("cross")]
        return (
            [[candidate_name(n, r) for n in cross] for r in range(1, candidates + 1)]
            if cross
            else []
        )

    def keys(self, candidates: int = 0) -> list[str]:
        """The KJT keys of a training batch: every feature, then the candidate cross keys.

        Args:
            candidates (int): R, candidate pairs per row; default 0.

        Returns:
            list[str]: feature names in KJT key order, then candidate_names flattened.
        """
        return self.names + [n for names in self.candidate_names(candidates) for n in names]

    def by_name(self, name: str) -> FeatureSpec:
        """The feature of that name; KeyError listing the known names otherwise.

        Args:
            name (str): a feature's name.

        Returns:
            FeatureSpec: the feature.
        """
        for spec in self.all:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(self.names)}")

    @property
    def managed_specs(self) -> list[FeatureSpec]:
        """Features whose ids go through managed collisions, in KJT key order."""
        return [s for s in self.all if s.ids == "managed"]

    def group_dim(self, name: Group) -> int:
        """Width of the concatenated pooled embeddings of one group.

        Args:
            name (Group): "user", "item", "context" or "cross".

        Returns:
            int: the sum of its features' dims; 0 for an empty group.
        """
        return sum(s.dim for s in self.group(name))

    def embedding_bag_configs(self, candidates: int = 0) -> list[EmbeddingBagConfig]:
        """Every feature's table, in KJT key order (the EBC's and the planner's tables).

        Args:
            candidates (int): R, candidate pairs per row (cross tables serve their keys too);
                default 0.

        Returns:
            list[EmbeddingBagConfig]: one per feature.
        """
        return [s.embedding_bag_config(candidates) for s in self.all]
