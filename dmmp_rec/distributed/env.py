"""The process group of a job: one process alone, or torchrun / torchx workers.

torchrun and torchx set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and MASTER_ADDR/PORT;
that is the launch protocol, not a behaviour switch. Without them the job runs as a single
process (world size 1) with a private gloo group, so the same code path (DMP, planner, DCP)
serves both.

`collective_device` is the one place that says on which device a collective takes its tensors
(NCCL has no CPU transport): every tensor our code hands to torch.distributed is put there.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from dmmp_rec.distributed.cuda_probe import CudaState, pick_device, probe_cuda


@dataclass(frozen=True)
class DistEnv:
    """The process group this process belongs to, and its device.

    Args:
        rank (int): global rank, in [0, world_size).
        world_size (int): number of ranks in the job.
        local_rank (int): rank on this host (picks the GPU).
        device (torch.device): the device this rank trains on.
        backend (str): the process group's backend, "nccl" or "gloo" (or a caller's mixed one).
        local_world_size (int): ranks on this host (one per GPU on GPU hosts); default 1.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_device(choice: str, local_rank: int, state: CudaState | None = None) -> torch.device:
    """The job's device for `train.device`, made current on a GPU.

    `auto` takes the local GPU when the host has a usable one, the CPU when it has none, and
    stops with the reason (DeviceError) when it has a GPU torch cannot use (cuda_probe.py). On a
    GPU this also makes it the process's current device (torch.cuda.set_device), which must
    happen before the process group exists: NCCL and the object collectives use it.

    Args:
        choice (str): train.device, "auto", "cpu" or "cuda".
        local_rank (int): this process's rank on its host.
        state (CudaState | None): a probe's result; None probes now.

    Returns:
        torch.device: cpu, or cuda:<local_rank>.
    """
    if choice == "cpu":
        return torch.device("cpu")
    device = pick_device(choice, local_rank, state if state is not None else probe_cuda())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def device_report(env: DistEnv) -> dict[str, object]:
    """What the job runs on, for the log and summary.json.

    Args:
        env (DistEnv): the job's process group and device.

    Returns:
        dict[str, object]: device, backend, world_size, local_world_size, gpu_name (None on the
        CPU), torch and torch_cuda (None for a CPU-only build).
    """
    on_gpu = env.device.type == "cuda"
    return {
        "device": str(env.device),
        "backend": env.backend,
        "world_size": env.world_size,
        "local_world_size": env.local_world_size,
        "gpu_name": torch.cuda.get_device_name(env.device) if on_gpu else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }


# The device type whose tensors each backend's collectives accept.
BACKEND_DEVICE_TYPES = {"nccl": "cuda", "gloo": "cpu"}


def _group_backend(group: dist.ProcessGroup | None) -> str:
    return str(dist.get_backend(group))


def _current_cuda_index() -> int:
    return torch.cuda.current_device()


def collective_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """The device on which collectives of `group` take tensors.

    cuda:<current device> under nccl (the local rank's GPU, set by `init_distributed`), the CPU
    under gloo or when there is no process group. Put every tensor handed to a torch.distributed
    collective here first, and bring results back to where they are used.

    Args:
        group (dist.ProcessGroup | None): the group; None for the default group.

    Returns:
        torch.device: cuda:<index> or cpu.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return torch.device("cpu")
    backend = _group_backend(group)
    kinds = {kind for name, kind in BACKEND_DEVICE_TYPES.items() if name in backend}
    if "cuda" in kinds:  # nccl, alone or beside gloo ("cpu:gloo,cuda:nccl")
        return torch.device("cuda", _current_cuda_index())
    return torch.device("cpu")


def _attempt_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The job's TCPStore (MASTER_ADDR:MASTER_PORT), keys scoped to this restart attempt.

    Under torchrun the elastic agent hosts the store and keeps it across restarts, and torch's
    env:// rendezvous does not prefix it per attempt. A restarted gloo group could then read a
    dead worker's address from the previous attempt and fail to connect its full mesh
    (measured: "Connection refused" to the old port, about one restart in three here).
    """
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=not agent_hosts_store and rank == 0,
        timeout=timeout,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"dmmp_rec/attempt_{attempt}", store)


def init_distributed(device_choice: str = "auto", timeout_s: float | None = None) -> DistEnv:
    """Join (or create) the default process group: nccl on GPU, gloo on CPU.

    Under torchrun / torchx (RANK and WORLD_SIZE set) it joins their group; alone it makes a
    private one-process gloo group; with a group already in place it reports that group.

    Args:
        device_choice (str): train.device, "auto", "cpu" or "cuda".
        timeout_s (float | None): bounds every wait on peers, joining included, in seconds;
            None for torch's default.

    Returns:
        DistEnv: rank, world size, local rank, device and backend of this process.
    """
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size if launched else 1))
    device = resolve_device(device_choice, local_rank)  # set_device first: see its docstring
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
    # nccl: bind the group to this rank's GPU (barriers and object collectives use it, and
    # NCCL connects now, so a broken GPU or network fails here rather than mid-training)
    device_id = device if backend == "nccl" else None
    if not dist.is_initialized():
        if launched:
            store = _attempt_store(rank, world_size, timeout or default_pg_timeout)
            dist.init_process_group(
                backend=backend,
                store=store,
                rank=rank,
                world_size=world_size,
                timeout=timeout,
                device_id=device_id,
            )
        else:
            dist.init_process_group(
                backend=backend,
                init_method=f"tcp://127.0.0.1:{_free_port()}",
                rank=0,
                world_size=1,
                timeout=timeout,
                device_id=device_id,
            )
    else:  # a caller's group: report what it is, not what we would have made
        backend = _group_backend(None)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if collective_device().type != device.type:
            raise RuntimeError(
                f"the process group in place uses {backend}, whose collectives take "
                f"{collective_device().type} tensors, but this job runs on {device.type}"
            )
    return DistEnv(rank, world_size, local_rank, device, backend, local_world_size)


def shutdown() -> None:
    """Destroy the default process group, if there is one."""
    if dist.is_initialized():
        dist.destroy_process_group()
