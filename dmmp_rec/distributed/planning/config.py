"""Sharding-plan configs (configs/plans/*.yaml): the cluster's topology and per-table constraints.

A plan config describes the machines a plan is made for (world size, GPUs per host, HBM and DDR
caps, per-rank batch size) and what the planner may choose for each table (sharding types,
compute kernels, column-wise minimum partition, UVM caching ratio). `planner.make_plan` turns it
into torchrec ParameterConstraints and a Topology. Keys are checked on load like the job config,
with errors naming the file and the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dmmp_rec.config.base import require
from dmmp_rec.config.root import build_with_overrides, read_yaml_mapping
from dmmp_rec.errors import DmmpError

GIB = 1024**3  # torchrec's planner reports "GB" as 2**30 bytes; so do we

ShardingTypeName = Literal[
    "data_parallel",
    "table_wise",
    "column_wise",
    "row_wise",
    "table_row_wise",
    "table_column_wise",
    "grid_shard",
]
ComputeKernelName = Literal["dense", "fused", "fused_uvm", "fused_uvm_caching"]
Device = Literal["cpu", "cuda"]

# gloo has no reduce_scatter and fbgemm-gpu-cpu no UVM: the planner cannot use these on CPU.
GPU_ONLY_SHARDING_TYPES = frozenset(
    {"row_wise", "table_row_wise", "table_column_wise", "grid_shard"}
)
GPU_ONLY_KERNELS = frozenset({"fused_uvm", "fused_uvm_caching"})
DEFAULT_KEY = "default"


class PlanError(DmmpError, ValueError):
    """A plan that cannot be used: does not fit, names unknown tables, or wrong world size."""


@dataclass
class TopologyConfig:
    """The cluster a plan is for (`topology:`). Null values are filled from the job.

    Args:
        world_size (int | None): ranks in the job, > 0; null (default): any, the job's or
            --world-size decides. A job of another size is refused.
        local_world_size (int | None): ranks per host, > 0, dividing world_size; null
            (default): the job's, else the world size on cpu and 8 on cuda.
        device (str | None): "cpu" or "cuda"; null (default): any. A plan config for cuda
            refuses a cpu job and vice versa.
        hbm_cap_gb (float | None): GPU memory per rank in GiB, >= 0; null (default): the
            smallest local GPU's, else torchrec's default (32 GiB).
        ddr_cap_gb (float | None): host memory per rank in GiB, >= 0; null (default):
            torchrec's default (128 GiB).
        batch_size (int | None): per-rank batch size the plan is estimated for, > 0; null
            (default): data.batch_size of the job config.
        reserve_fraction (float): share of each rank's memory kept free as margin of error,
            in [0, 1); default 0.15.
        dense_reserve_gb (float | None): GiB per rank reserved for the dense parameters,
            their optimiser state and DDP, >= 0; null (default): torchrec's estimate.
        intra_host_bw_gbs (float | None): bandwidth within a host in GiB/s, >= 0; null
            (default): torchrec's default.
        inter_host_bw_gbs (float | None): bandwidth between hosts in GiB/s, >= 0; null
            (default): torchrec's default.
    """

    world_size: int | None = None
    local_world_size: int | None = None
    device: Device | None = None
    hbm_cap_gb: float | None = None
    ddr_cap_gb: float | None = None
    batch_size: int | None = None
    reserve_fraction: float = 0.15
    dense_reserve_gb: float | None = None
    intra_host_bw_gbs: float | None = None
    inter_host_bw_gbs: float | None = None

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        for name in ("world_size", "local_world_size", "batch_size"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{path}.{name}", f"must be > 0, got {value}")
        for name in (
            "hbm_cap_gb",
            "ddr_cap_gb",
            "dense_reserve_gb",
            "intra_host_bw_gbs",
            "inter_host_bw_gbs",
        ):
            value = getattr(self, name)
            require(value is None or value >= 0, f"{path}.{name}", f"must be >= 0, got {value}")
        require(
            0.0 <= self.reserve_fraction < 1.0,
            f"{path}.reserve_fraction",
            f"must be in [0, 1), got {self.reserve_fraction}",
        )
        if self.world_size is not None and self.local_world_size is not None:
            require(
                self.world_size % self.local_world_size == 0,
                f"{path}.local_world_size",
                f"world_size ({self.world_size}) must be a multiple of local_world_size "
                f"({self.local_world_size})",
            )


@dataclass
class TableConstraint:
    """What the planner may choose for one table (`tables.<name>:`); null leaves it to the planner.

    Args:
        sharding_types (list[str] | None): allowed sharding types, non-empty, of
            data_parallel, table_wise, column_wise, row_wise, table_row_wise,
            table_column_wise, grid_shard (the last four need cuda); null (default): every
            type the device allows.
        compute_kernels (list[str] | None): allowed kernels, non-empty, of dense, fused,
            fused_uvm, fused_uvm_caching (the UVM ones need cuda); null (default): any.
        min_partition (int | None): column_wise shards are at least this wide, > 0; null
            (default): torchrec's 128.
        caching_ratio (float | None): fused_uvm_caching's share of rows cached in HBM, in
            (0, 1]; needs compute_kernels to include fused_uvm_caching. Default null.
        cache_algorithm (str | None): "lru" or "lfu", the cache's eviction; needs
            fused_uvm_caching like caching_ratio. Default null (LRU when caching_ratio is set).
        pooling_factor (float | None): mean ids per sample, > 0, for the planner's cost
            estimates of multi-valued features; null (default): torchrec's 1.0.
    """

    sharding_types: list[ShardingTypeName] | None = None
    compute_kernels: list[ComputeKernelName] | None = None
    min_partition: int | None = None
    caching_ratio: float | None = None
    cache_algorithm: Literal["lru", "lfu"] | None = None
    pooling_factor: float | None = None

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        for name in ("sharding_types", "compute_kernels"):
            value = getattr(self, name)
            require(value is None or len(value) > 0, f"{path}.{name}", "must not be empty")
        require(
            self.min_partition is None or self.min_partition > 0,
            f"{path}.min_partition",
            f"must be > 0, got {self.min_partition}",
        )
        require(
            self.caching_ratio is None or 0.0 < self.caching_ratio <= 1.0,
            f"{path}.caching_ratio",
            f"must be in (0, 1], got {self.caching_ratio}",
        )
        caches = self.caching_ratio is not None or self.cache_algorithm is not None
        require(
            not caches
            or (self.compute_kernels is not None and "fused_uvm_caching" in self.compute_kernels),
            f"{path}.caching_ratio",
            "caching settings need compute_kernels to include fused_uvm_caching",
        )
        require(
            self.pooling_factor is None or self.pooling_factor > 0,
            f"{path}.pooling_factor",
            f"must be > 0, got {self.pooling_factor}",
        )


CommPrecision = Literal["fp32", "fp16", "bf16"]


@dataclass
class CommsConfig:
    """Precision of the pooled embeddings' all-to-all (and reduce-scatter) (`comms:`).

    torchrec's QCommsConfig, applied through the sharders' qcomm codecs. fp16 / bf16 halve the
    bytes on the wire at a rounding of the embeddings (forward) and their gradients (backward);
    fp32 in both directions (the default) sends the embeddings unchanged.

    Args:
        forward_precision (str): "fp32" (default), "fp16" or "bf16" (bf16 needs cuda: gloo
            has no bf16 codec).
        backward_precision (str): the same choices, for the gradients; default "fp32".
    """

    forward_precision: CommPrecision = "fp32"
    backward_precision: CommPrecision = "fp32"

    @property
    def quantized(self) -> bool:
        return (self.forward_precision, self.backward_precision) != ("fp32", "fp32")

    def to_dict(self) -> dict[str, str]:
        """The two precisions by key, as saved in a plan's meta.

        Returns:
            dict[str, str]: forward_precision and backward_precision.
        """
        return {"forward_precision": self.forward_precision,
                "backward_precision": self.backward_precision}  # fmt: skip


def comms_problem(comms: CommsConfig, device: str) -> str | None:
    """Why `comms` cannot run on `device`, or None.

    gloo (cpu) has no bf16 codec, and torchrec would fall back to fp16 with only a log line.

    Args:
        comms (CommsConfig): the comms section.
        device (str): "cpu" or "cuda".

    Returns:
        str | None: a one-line reason, or None when it can run.
    """
    if device == "cpu" and "bf16" in (comms.forward_precision, comms.backward_precision):
        return "bf16 comms need cuda (NCCL): gloo has no bf16 codec; use fp16 or fp32 on cpu"
    return None


@dataclass
class PlanConfig:
    """A whole plan config (configs/plans/*.yaml): topology, per-table constraints and comms.

    Args:
        topology (TopologyConfig): the cluster the plan is for; default all nulls (any).
        tables (dict[str, TableConstraint]): constraints keyed by feature or table name; the
            key `default` applies to every table that is not named (a named table does not
            inherit from it). Default empty: the planner chooses freely.
        comms (CommsConfig): precision of the embedding comms; default fp32 both ways.
        description (str): free text for the reader; default "".
    """

    topology: TopologyConfig = field(default_factory=TopologyConfig)
    tables: dict[str, TableConstraint] = field(default_factory=dict)
    comms: CommsConfig = field(default_factory=CommsConfig)
    description: str = ""
    source: str = field(default="<dict>", init=False, compare=False)

    def validate(self, path: str) -> None:
        """For a plan config made for cpu, refuse comms and table constraints that need a GPU.

        Args:
            path (str): the config's dotted key path ("" at the top), for the error messages.
        """
        if self.topology.device != "cpu":
            return
        prefix = f"{path}." if path else ""
        problem = comms_problem(self.comms, "cpu")
        require(problem is None, f"{prefix}comms", str(problem))
        for key, constraint in self.tables.items():
            problem = cpu_problem(constraint)
            require(problem is None, f"{prefix}tables.{key}", str(problem))


def cpu_problem(constraint: TableConstraint) -> str | None:
    """Why `constraint` cannot be planned on CPU, or None when it can.

    Args:
        constraint (TableConstraint): one table's constraint.

    Returns:
        str | None: a one-line reason naming the GPU-only sharding types or kernels, or None.
    """
    gpu_types = sorted(set(constraint.sharding_types or ()) & GPU_ONLY_SHARDING_TYPES)
    if gpu_types:
        return (
            f"sharding types {', '.join(gpu_types)} cannot be planned for device cpu (gloo has "
            "no reduce_scatter); use table_wise, column_wise or data_parallel"
        )
    gpu_kernels = sorted(set(constraint.compute_kernels or ()) & GPU_ONLY_KERNELS)
    if gpu_kernels:
        return f"compute kernels {', '.join(gpu_kernels)} need a GPU; use fused or dense on cpu"
    return None


def plan_config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, source: str = "<dict>"
) -> PlanConfig:
    """Build and validate a plan config from a raw dict; errors name `source` and the key.

    Args:
        raw (dict[str, Any]): the parsed YAML mapping.
        overrides (list[str] | None): dotted `key=value` overrides applied first (as
            --set does for the job config); None for none.
        source (str): where the dict came from (a file path), for errors and `PlanConfig.source`.

    Returns:
        PlanConfig: the validated config.
    """
    return build_with_overrides(PlanConfig, raw, overrides, source)


def load_plan_config(path: str | Path, overrides: list[str] | None = None) -> PlanConfig:
    """Load a plan YAML (configs/plans/*.yaml), apply dotted overrides and validate it.

    Args:
        path (str | Path): the YAML file; ConfigError naming it when missing or not a mapping.
        overrides (list[str] | None): dotted `key=value` overrides; None for none.

    Returns:
        PlanConfig: the validated config, its `source` the path.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "plan config", empty_is_mapping=True)
    return plan_config_from_dict(raw, overrides, source=str(path))
