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
    """One input of the user side, in the order the exported module takes them.

    Args:
        name (str): the feature's name (a request's field or column).
        group (str): "user" or "context".
        cardinality (int): rows of its table; ids are folded into [0, cardinality).
        dim (int): its embedding width.
        pooling (str): "sum" or "mean" over a bag.
        multi_valued (bool): whether a request gives a list of ids.
        out_of_range (str): "hash" (fold ids outside the table) or "error" (refuse them).
        ids (str): "hash" (default) or "managed": raw ids go through the trained remapping
            (files.managed_ids) before the table.
        managed (ManagedIdsSpec): the remapping's settings, for managed ids.
    """

    name: str
    group: Literal["user", "context"]
    cardinality: int
    dim: int
    pooling: Literal["sum", "mean"]
    multi_valued: bool
    out_of_range: Literal["hash", "error"]
    ids: Literal["hash", "managed"] = "hash"
    managed: ManagedIdsSpec = field(default_factory=ManagedIdsSpec)

    @staticmethod
    def of(spec: FeatureSpec) -> UserFeature:
        """The manifest entry of a user or context feature of the config.

        Args:
            spec (FeatureSpec): the feature.

        Returns:
            UserFeature: its serving-relevant settings.
        """
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
        """The FeatureSpec that `dmmp_rec.data.id_policy` folds ids with.

        Returns:
            FeatureSpec: the feature as the training loader saw it.
        """
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
    """One file of the export, checked before use.

    Args:
        path (str): relative to the export directory.
        bytes (int): its size.
        sha256 (str): hex digest of its contents.
    """

    path: str
    bytes: int
    sha256: str

    @staticmethod
    def of(root: Path, name: str) -> FileEntry:
        """The entry of file `name` of the export directory `root`, hashed now.

        Args:
            root (Path): the export directory.
            name (str): the file's path relative to `root`.

        Returns:
            FileEntry: its path, size and SHA-256.
        """
        digest = hashlib.sha256()
        with open(root / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return FileEntry(name, (root / name).stat().st_size, digest.hexdigest())


@dataclass
class ApproxIndex:
    """The HNSW index's settings and its measured recall (serving.index.ApproxTuning).

    Args:
        kind (str): "hnsw".
        m (int): neighbours per node.
        ef_construction (int): efConstruction the index was built with.
        ef_search (int): efSearch chosen; retrieval sets it on load.
        recall (float): recall@k against the exact index there, on `queries` real user queries.
        k (int): the recall's cut-off.
        queries (int): users the recall was measured on.
        target (float): the recall@k tuning aimed for.
        tried (dict[str, float]): efSearch -> recall@k of every value tried.
    """

    kind: Literal["hnsw"]
    m: int
    ef_construction: int
    ef_search: int
    recall: float
    k: int
    queries: int
    target: float
    tried: dict[str, float] = field(default_factory=dict)


@dataclass
class Quantization:
    """`export --quantize int8`: table bytes, and int8 retrieval against fp32 on the recall users.

    The overlap compares exact top-k of int8 queries over int8 item vectors with fp32 over fp32.

    Args:
        tables (str): "int8_rowwise".
        table_bytes (dict[str, int]): user_side / item_side: bytes of the int8 rows with their
            scales.
        fp32_table_bytes (dict[str, int]): the same tables in fp32.
        top_k (int): k of the overlap.
        users (int): users compared.
        top_k_overlap_mean (float): mean share of top-k items in common, in [0, 1].
        top_k_overlap_min (float): the smallest share over the users.
        query_max_abs_diff (float): largest |int8 - fp32| over the query entries.
    """

    tables: Literal["int8_rowwise"]
    table_bytes: dict[str, int]
    fp32_table_bytes: dict[str, int]
    top_k: int
    users: int
    top_k_overlap_mean: float
    top_k_overlap_min: float
    query_max_abs_diff: float


@dataclass
class Manifest:
    """manifest.json: everything retrieval needs to know about an export (see the module docstring).

    Args:
        format (int): the manifest format, 1.
        versions (dict[str, str]): package versions that wrote it (dmmp_rec, torch, ...).
        variant (str): model.variant of the trained model.
        vector_dim (int): query and item vector width D (2d, or d for two_tower).
        tower_dim (int): d, the student's tower width.
        tau (float): the trained score temperature.
        num_items (int): rows of item_vectors and item_ids.
        item_id_feature (str): the item feature whose ids item_ids holds.
        user_features (list[UserFeature]): the user side's inputs, in its order.
        files (dict[str, FileEntry]): role -> file: user_side, item_vectors, item_ids, exact,
            approx (and managed_ids, item_side when exported).
        approx (ApproxIndex): the HNSW index's settings and measured recall.
        checkpoint (str): the checkpoint directory exported.
        train_step (int): its training step.
        data_path (str): the world the catalogue came from (its users.parquet serves demo users).
        query_max_abs_diff (float): exported user side vs the training model on the recall
            users (int8: vs its eager int8 module; `quantization` has int8 vs fp32).
        export_seconds (float): how long the export took; default 0.
        quantization (Quantization | None): int8 tables' figures; None (default): fp32 tables.
    """

    format: int
    versions: dict[str, str]
    variant: str
    vector_dim: int
    tower_dim: int
    tau: float
    num_items: int
    item_id_feature: str
    user_features: list[UserFeature]
    files: dict[str, FileEntry]
    approx: ApproxIndex
    checkpoint: str
    train_step: int
    data_path: str
    query_max_abs_diff: float
    export_seconds: float = 0.0
    quantization: Quantization | None = None

    def write(self, root: str | Path) -> Path:
        """Write the manifest as JSON into the export directory.

        Args:
            root (str | Path): the export directory.

        Returns:
            Path: the manifest.json written.
        """
        path = Path(root) / MANIFEST_FILE
        path.write_text(json.dumps(to_dict(self), indent=1))
        return path

    def file(self, root: str | Path, role: str) -> Path:
        """The path of the file of a role, or ConfigError naming the role when the export has none.

        Args:
            root (str | Path): the export directory.
            role (str): a key of `files`, e.g. "user_side" or "approx".

        Returns:
            Path: root / that file's path.
        """
        if role not in self.files:
            raise ConfigError(f"files.{role}", "no such file in the export", str(root))
        return Path(root) / self.files[role].path


def read_manifest(root: str | Path) -> Manifest:
    """The manifest of an export directory; errors name the file and the key.

    Args:
        root (str | Path): the export directory.

    Returns:
        Manifest: validated by the config builder (unknown keys and bad types refused, format 1).
    """
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
