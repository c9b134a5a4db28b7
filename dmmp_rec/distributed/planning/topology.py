"""The cluster a plan is made for: the plan config's topology (hosts, memory caps, bandwidths)
as a torchrec Topology, and the checks that a plan config was made for this job's shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchrec.distributed.planner.constants import HBM_CAP as TORCHREC_HBM_CAP
from torchrec.distributed.planner.types import (
    HardwareConfig,
    KernelConfig,
    Topology,
    TopologyFactory,
    TrainerConfig,
)

from dmmp_rec.distributed.planning.config import GIB, PlanConfig, PlanError

GPUS_PER_HOST = 8


@dataclass(frozen=True)
class HbmCap:
    """The memory the planner assumes per GPU, and where that figure comes from."""

    bytes: int
    source: str

    def describe(self) -> str:
        """One phrase for the log: the figure in GiB and where it comes from.

        Returns:
            str: e.g. "HBM per GPU 80.00 GiB (topology.hbm_cap_gb)".
        """
        return f"HBM per GPU {self.bytes / GIB:.2f} GiB ({self.source})"


def local_gpu_properties() -> list[Any]:
    """torch.cuda.get_device_properties of every GPU this process sees.

    Returns:
        list[Any]: one per GPU (with `name` and `total_memory`); [] without CUDA.
    """
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]


def hbm_cap(
    plan_cfg: PlanConfig, gpu_properties: Callable[[], Sequence[Any]] = local_gpu_properties
) -> HbmCap:
    """The GPU memory the planner assumes per rank, and where that figure comes from.

    The plan config's `topology.hbm_cap_gb`; else the smallest local GPU's total memory; else
    torchrec's default of 32 GiB, which is wrong for most GPUs (an H100 has 80).

    Args:
        plan_cfg (PlanConfig): the plan config.
        gpu_properties (Callable[[], Sequence[Any]]): lists the local GPUs (objects with
            `name` and `total_memory`, as torch's device properties); tests pass their own.

    Returns:
        HbmCap: bytes per GPU and its source.
    """
    if plan_cfg.topology.hbm_cap_gb is not None:
        return HbmCap(int(plan_cfg.topology.hbm_cap_gb * GIB), "topology.hbm_cap_gb")
    gpus = list(gpu_properties())
    if gpus:
        smallest = min(gpus, key=lambda p: p.total_memory)
        return HbmCap(
            int(smallest.total_memory),
            f"this host's {smallest.name}, the smallest of {len(gpus)} local GPU(s)",
        )
    return HbmCap(
        TORCHREC_HBM_CAP,
        "torchrec's default: no GPU here and no topology.hbm_cap_gb; set it for your GPUs",
    )


def _gb(value: float | None) -> int | None:
    return None if value is None else int(value * GIB)


def _gbs_to_bytes_per_ms(gbs: float | None) -> float | None:
    return None if gbs is None else gbs * GIB / 1000.0


def build_topology(
    plan_cfg: PlanConfig,
    world_size: int,
    device: str,
    local_world_size: int | None = None,
    hbm: HbmCap | None = None,
) -> Topology:
    """The cluster of the plan config, for `world_size` ranks on `device`, via TopologyFactory.

    Args:
        plan_cfg (PlanConfig): the plan config (memory caps, bandwidths, ranks per host).
        world_size (int): the number of ranks.
        device (str): "cpu" or "cuda".
        local_world_size (int | None): the job's ranks per host, used when the plan config
            gives none; None: the world size on cpu, 8 on cuda. Must divide world_size
            (PlanError otherwise).
        hbm (HbmCap | None): memory per GPU; None: the plan config's cap, else torchrec's
            default.

    Returns:
        Topology: torchrec's topology (hardware-based bandwidths when the config sets any).
    """
    topo = plan_cfg.topology
    per_host = (
        topo.local_world_size
        or local_world_size
        or (GPUS_PER_HOST if device == "cuda" else world_size)
    )
    local = min(per_host, world_size)  # fewer ranks than one host holds: one partial host
    if world_size % local != 0:
        if topo.local_world_size:
            where = f"{plan_cfg.source}: topology.local_world_size"
        elif local_world_size:
            where = "local world size (--local-world-size, or the job's ranks per host)"
        else:
            where = f"ranks per host (default {GPUS_PER_HOST} on cuda; give --local-world-size)"
        raise PlanError(f"{where}: {world_size} ranks cannot be split into hosts of {local}")
    hardware = HardwareConfig(
        intra_host_bw=_gbs_to_bytes_per_ms(topo.intra_host_bw_gbs),
        inter_host_bw=_gbs_to_bytes_per_ms(topo.inter_host_bw_gbs),
    )
    custom_bw = topo.intra_host_bw_gbs is not None or topo.inter_host_bw_gbs is not None
    return TopologyFactory.create_topology(
        trainer_config=TrainerConfig(
            world_size=world_size,
            local_world_size=local,
            hbm_cap_bytes=hbm.bytes if hbm is not None else _gb(topo.hbm_cap_gb),
            ddr_cap_bytes=_gb(topo.ddr_cap_gb),
        ),
        hardware_config=hardware,
        kernel_config=KernelConfig(compute_device=device, use_hardware_based_bandwidth=custom_bw),
    )


def check_job_matches(
    plan_cfg: PlanConfig, world_size: int, device: str, local_world_size: int | None
) -> None:
    """Raise PlanError when the plan config was made for another job shape.

    Args:
        plan_cfg (PlanConfig): the plan config; its null topology values match anything.
        world_size (int): the job's number of ranks.
        device (str): the job's device, "cpu" or "cuda".
        local_world_size (int | None): the job's ranks per host; None skips that check.
    """
    topo = plan_cfg.topology
    if (
        topo.local_world_size is not None
        and local_world_size is not None
        and min(topo.local_world_size, world_size) != local_world_size
    ):
        raise PlanError(
            f"{plan_cfg.source}: topology.local_world_size: the plan config is for "
            f"{topo.local_world_size} ranks per host but the job runs {local_world_size} per "
            "host; shards would be placed on GPUs this host does not have (override "
            "topology.local_world_size)"
        )
    if topo.world_size is not None and topo.world_size != world_size:
        raise PlanError(
            f"{plan_cfg.source}: topology.world_size: the plan config is for {topo.world_size} "
            f"ranks but the job has {world_size}; use a plan config for {world_size} ranks "
            "(or override topology.world_size)"
        )
    if topo.device is not None and topo.device != device:
        raise PlanError(
            f"{plan_cfg.source}: topology.device: the plan config is for {topo.device} "
            f"but the job runs on {device}"
        )
