"""The cluster a plan is made for: the plan config's topology (hosts, memory caps, bandwidths)
as a torchrec Topology, and the checks that a plan config was made for this job's shape."""

from __future__ import annotations

from torchrec.distributed.planner.types import (
    HardwareConfig,
    KernelConfig,
    Topology,
    TopologyFactory,
    TrainerConfig,
)

from dmmp_rec.distributed.plan_config import GIB, PlanConfig, PlanError

GPUS_PER_HOST = 8


def _gbs_to_bytes_per_ms(gbs: float | None) -> float | None:
    return None if gbs is None else gbs * GIB / 1000.0


def build_topology(
    plan_cfg: PlanConfig, world_size: int, device: str, local_world_size: int | None = None
) -> Topology:
    """The cluster of the plan config, for `world_size` ranks on `device`, via TopologyFactory.
    Ranks per host: the plan config's, else the job's `local_world_size`, else the world size
    on cpu and 8 on cuda."""
    topo = plan_cfg.topology
    per_host = (
        topo.local_world_size
        or local_world_size
        or (GPUS_PER_HOST if device == "cuda" else world_size)
    )
    local = min(per_host, world_size)  # fewer ranks than one host holds: one partial host
    if world_size % local != 0:
        raise PlanError(
            f"{plan_cfg.source}: topology.local_world_size: {world_size} ranks cannot be split "
            f"into hosts of {local}"
        )
    hardware = HardwareConfig(
        intra_host_bw=_gbs_to_bytes_per_ms(topo.intra_host_bw_gbs),
        inter_host_bw=_gbs_to_bytes_per_ms(topo.inter_host_bw_gbs),
    )
    custom_bw = topo.intra_host_bw_gbs is not None or topo.inter_host_bw_gbs is not None
    return TopologyFactory.create_topology(
        trainer_config=TrainerConfig(
            world_size=world_size,
            local_world_size=local,
            hbm_cap_bytes=None if topo.hbm_cap_gb is None else int(topo.hbm_cap_gb * GIB),
            ddr_cap_bytes=None if topo.ddr_cap_gb is None else int(topo.ddr_cap_gb * GIB),
        ),
        hardware_config=hardware,
        kernel_config=KernelConfig(compute_device=device, use_hardware_based_bandwidth=custom_bw),
    )


def check_job_matches(
    plan_cfg: PlanConfig, world_size: int, device: str, local_world_size: int | None
) -> None:
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
