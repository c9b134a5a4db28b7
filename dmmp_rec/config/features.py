"""The sparse-feature schema: one table per feature, grouped into user, item and context.

The schema is the single source of the EmbeddingBagConfigs, the KeyedJaggedTensor key order and
the Parquet column names, so the loader, the model and the sharding planner can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType

from dmmp_rec.config.base import require

Group = Literal["user", "item", "context"]
GROUPS: tuple[Group, ...] = ("user", "item", "context")


@dataclass
class FeatureSpec:
    """One sparse feature and its embedding table."""

    name: str
    cardinality: int
    dim: int
    pooling: Literal["sum", "mean"] = "sum"
    multi_valued: bool = False
    # hash: fold out-of-range ids into rows 1..cardinality-1 by SplitMix64 (counted; the one
    # mapping of dmmp_rec.data.id_policy, from conversion to serving);
    # error: stop, naming the feature, file and row.
    out_of_range: Literal["hash", "error"] = "hash"
    group: Group = field(default="user", init=False)

    def validate(self, path: str) -> None:
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

    @property
    def table_name(self) -> str:
        return f"t_{self.name}"

    def embedding_bag_config(self) -> EmbeddingBagConfig:
        return EmbeddingBagConfig(
            name=self.table_name,
            embedding_dim=self.dim,
            num_embeddings=self.cardinality,
            feature_names=[self.name],
            pooling=PoolingType.SUM if self.pooling == "sum" else PoolingType.MEAN,
        )


@dataclass
class FeaturesConfig:
    """Features by group. User and item groups are required; context may be omitted."""

    user: list[FeatureSpec]
    item: list[FeatureSpec]
    context: list[FeatureSpec] | None = None

    def validate(self, path: str) -> None:
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
        if self.context is None:
            self.context = []

    def group(self, name: Group) -> list[FeatureSpec]:
        return list(getattr(self, name) or [])

    @property
    def all(self) -> list[FeatureSpec]:
        """Every feature in KeyedJaggedTensor key order: user, item, then context."""
        return [s for g in GROUPS for s in self.group(g)]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.all]

    def by_name(self, name: str) -> FeatureSpec:
        for spec in self.all:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(self.names)}")

    def group_dim(self, name: Group) -> int:
        """Width of the concatenated pooled embeddings of one group."""
        return sum(s.dim for s in self.group(name))

    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return [s.embedding_bag_config() for s in self.all]
