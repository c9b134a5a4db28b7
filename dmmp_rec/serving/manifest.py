"""manifest.json: everything retrieval needs to know about an export, without the config.

Versions, variant, dims, tau, item count, the user-side feature order with cardinalities and
out-of-range policies (retrieve validates and folds request ids with them), every file with its
size and SHA-256, and the approximate index's measured recall. Read back through the same typed
builder as the config, so a damaged manifest fails naming the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dmmp_rec.config.base import ConfigError, build, to_dict
from dmmp_rec.config.features import FeatureSpec, ManagedIdsSpec

MANIFEST_FILE = "manifest.json"
FORMAT = 1


@dataclass
class UserFeature:
    """One input of the user side, in the order the exported module takes them."""

    name: str
    group: Literal["user", "context"]
    cardinality: int
    dim: int
    pooling: Literal["sum", "mean"]
    multi_valued: bool
    out_of_range: Literal["hash", "error"]
    # managed: raw ids go through the trained remapping (files.managed_ids) before the table
    ids: Literal["hash", "managed"] = "hash"
    managed: ManagedIdsSpec = field(default_factory=ManagedIdsSpec)

    @staticmethod
    def of(spec: FeatureSpec) -> UserFeature:
        return UserFeature(
            spec.name,
            spec.group,  # type: ignore[arg-type]
            spec.cardinality,
            spec.dim,
            spec.pooling,
            spec.multi_valued,
            spec.out_of_range,
            spec.ids,
            spec.managed,
        )

    def spec(self) -> FeatureSpec:
        """The FeatureSpec that `dmmp_rec.data.id_policy` folds ids with."""
        return FeatureSpec(
            self.name,
            self.cardinality,
            self.dim,
            self.pooling,
            self.multi_valued,
            self.out_of_range,
            ids=self.ids,
            managed=self.managed,
        )


@dataclass
class FileEntry:
    path: str  # relative to the export directory
    bytes: int
    sha256: str

    @staticmethod
    def of(root: Path, name: str) -> FileEntry:
        digest = hashlib.sha256()
        with open(root / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return FileEntry(name, (root / name).stat().st_size, digest.hexdigest())


@dataclass
class ApproxIndex:
    kind: Literal["hnsw"]
    m: int
    ef_construction: int
    ef_search: int
    recall: float  # recall@k against the exact index, measured on `queries` real user queries
    k: int
    queries: int
    target: float
    tried: dict[str, float] = field(default_factory=dict)  # efSearch -> recall@k


@dataclass
class Quantization:
    """`export --quantize int8`: table bytes, and int8 retrieval against fp32 on the recall users
    (exact top-k of int8 queries over int8 item vectors vs fp32 over fp32)."""

    tables: Literal["int8_rowwise"]
    table_bytes: dict[str, int]  # user_side / item_side: int8 rows with their scales
    fp32_table_bytes: dict[str, int]
    top_k: int
    users: int
    top_k_overlap_mean: float
    top_k_overlap_min: float
    query_max_abs_diff: float  # int8 vs fp32 queries


@dataclass
class Manifest:
    format: int
    versions: dict[str, str]
    variant: str
    vector_dim: int  # query and item vector width D (2d, or d for two_tower)
    tower_dim: int  # d
    tau: float
    num_items: int
    item_id_feature: str
    user_features: list[UserFeature]
    files: dict[str, FileEntry]  # role -> file: user_side, item_vectors, item_ids, exact, approx
    approx: ApproxIndex
    checkpoint: str
    train_step: int
    data_path: str  # the world the catalogue came from (its users.parquet serves demo users)
    query_max_abs_diff: float  # exported user side vs the training model (int8: vs its eager
    # int8 module; `quantization` has int8 vs fp32), on the recall users
    export_seconds: float = 0.0
    quantization: Quantization | None = None  # None: fp32 tables

    def write(self, root: str | Path) -> Path:
        path = Path(root) / MANIFEST_FILE
        path.write_text(json.dumps(to_dict(self), indent=1))
        return path

    def file(self, root: str | Path, role: str) -> Path:
        if role not in self.files:
            raise ConfigError(f"files.{role}", "no such file in the export", str(root))
        return Path(root) / self.files[role].path


def read_manifest(root: str | Path) -> Manifest:
    """The manifest of an export directory; errors name the file and the key."""
    path = Path(root) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("", "no manifest: not an export directory", str(path)) from None
    except json.JSONDecodeError as e:
        raise ConfigError("", f"invalid JSON: {e}", str(path)) from None
    try:
        manifest = build(Manifest, raw)
    except ConfigError as e:
        raise e.with_source(str(path)) from None
    if manifest.format != FORMAT:
        raise ConfigError("format", f"unsupported format {manifest.format}", str(path))
    return manifest
