"""The process group of a job: one process alone, or torchrun / torchx workers.

torchrun and torchx set RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; that is the launch
protocol, not a behaviour switch. Without them the job runs as a single process (world size 1)
with a private gloo group, so the same code path (DMP, planner, DCP) serves both.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_device(choice: str, local_rank: int) -> torch.device:
    """`auto` takes the local GPU when CUDA is available, else the CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available on this machine")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
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
    """Join (or create) the default process group: nccl on GPU, gloo on CPU. `timeout_s` bounds
    every wait on peers, joining included (torch's default when None)."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_choice, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        if launched:
            store = _attempt_store(rank, world_size, timeout or default_pg_timeout)
            dist.init_process_group(
                backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout
            )
        else:
            dist.init_process_group(
                backend=backend,
                init_method=f"tcp://127.0.0.1:{_free_port()}",
                rank=0,
                world_size=1,
                timeout=timeout,
            )
    return DistEnv(rank, world_size, local_rank, device, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
