"""Whether this host's GPUs can run the job, and why not: no silent fall-back to the CPU.

torch says only `torch.cuda.is_available() == False` when its build is CPU-only, the driver is
too old for its CUDA (PyPI torch 2.13.0 is a CUDA 13.0 build: NVIDIA driver >= 580), or it was
not built for the GPU's architecture (compute capability >= 7.5: no V100). With
`train.device=auto` each of those used to mean "train on the CPU" without a word. The driver's
own list of GPUs (/proc/driver/nvidia/gpus, else `nvidia-smi -L`) tells a host without a GPU
from a GPU that cannot be used; the second stops the job with the reason (`DeviceError`).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dmmp_rec.errors import DmmpError

MIN_CAPABILITY = (7, 5)  # when torch lists no architectures: CUDA 13's oldest (Turing)
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


class DeviceError(DmmpError, RuntimeError):
    """The job's device cannot be used: which device, and why."""


@dataclass(frozen=True)
class CudaState:
    """What the driver shows and what torch can do with it, probed once per process."""

    visible_gpus: int  # GPUs the NVIDIA driver lists, whether or not torch can use them
    torch_version: str
    torch_cuda: str | None  # torch.version.cuda; None for a CPU-only build
    available: bool  # torch.cuda.is_available()
    init_warning: str | None = None  # torch's own words when CUDA did not initialise
    devices: tuple[tuple[str, tuple[int, int]], ...] = ()  # (name, capability) per GPU
    arch_list: tuple[str, ...] = ()  # torch.cuda.get_arch_list(), e.g. ("sm_75", ..., "sm_120")


def driver_gpus() -> int:
    """GPUs the NVIDIA driver lists: /proc/driver/nvidia/gpus, else `nvidia-smi -L`, else 0.

    Returns:
        int: the count, whether or not torch can use them; 0 when neither source answers.
    """
    if NVIDIA_PROC.is_dir():
        return sum(1 for _ in NVIDIA_PROC.iterdir())
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def probe_cuda() -> CudaState:
    """This process's CudaState (initialises CUDA when torch has it; creates no context).

    Returns:
        CudaState: the driver's GPU count, torch's build and CUDA version, availability (with
        torch's warning when CUDA did not initialise), each GPU's name and capability, and
        torch's architecture list.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    said = [str(w.message) for w in caught if "CUDA" in str(w.message)]
    devices: tuple[tuple[str, tuple[int, int]], ...] = ()
    arch: tuple[str, ...] = ()
    if available:
        count = torch.cuda.device_count()
        devices = tuple(
            (torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
            for i in range(count)
        )
        arch = tuple(torch.cuda.get_arch_list())
    return CudaState(
        visible_gpus=driver_gpus(),
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        available=available,
        init_warning=" ".join(said).replace("\n", " ") or None,
        devices=devices,
        arch_list=arch,
    )


def min_capability(arch_list: tuple[str, ...]) -> tuple[int, int]:
    """The oldest compute capability torch has kernels for ("sm_75" -> (7, 5)).

    Args:
        arch_list (tuple[str, ...]): torch.cuda.get_arch_list(); "compute_*" entries ignored.

    Returns:
        tuple[int, int]: (major, minor); MIN_CAPABILITY (7, 5) when the list names no sm_ arch.
    """
    caps = [a.removeprefix("sm_") for a in arch_list if a.startswith("sm_")]
    parsed = [(int(c[:-1]), int(c[-1])) for c in caps if c.isdigit() and len(c) >= 2]
    return min(parsed) if parsed else MIN_CAPABILITY


def cuda_problem(state: CudaState) -> str | None:
    """Why this host's GPUs cannot run the job, in one sentence.

    Args:
        state (CudaState): the probe's result.

    Returns:
        str | None: the reason (CPU-only torch with GPUs present, CUDA that did not initialise,
        a GPU older than torch's kernels), or None when the GPUs can run it or there is no GPU
        at all (a CPU host, not a problem).
    """
    build = f"torch {state.torch_version}"
    if state.torch_cuda is None:
        if state.visible_gpus == 0:
            return None
        return (
            f"{build} is a CPU-only build (torch.version.cuda is None) but the NVIDIA driver "
            f"lists {state.visible_gpus} GPU(s); install the CUDA stack with "
            "`make install DEVICE=cuda`"
        )
    if not state.available:
        if state.visible_gpus == 0:
            return None
        reason = state.init_warning or "torch.cuda.is_available() is False"
        return (
            f"{build} (CUDA {state.torch_cuda}) cannot use the {state.visible_gpus} GPU(s) the "
            f"driver lists: {reason} (CUDA {state.torch_cuda} needs NVIDIA driver >= 580; "
            "README: GPU hosts)"
        )
    oldest = min_capability(state.arch_list)
    for i, (name, cap) in enumerate(state.devices):
        if tuple(cap) < oldest:
            return (
                f"GPU {i} ({name}) has compute capability {cap[0]}.{cap[1]} but {build} (CUDA "
                f"{state.torch_cuda}) has kernels for {oldest[0]}.{oldest[1]} and newer only "
                "(no V100 / P100; README: GPU hosts)"
            )
    return None


def pick_device(choice: str, local_rank: int, state: CudaState) -> torch.device:
    """The job's device for `train.device` on this host, or DeviceError.

    `auto` is the CPU only on a host whose driver lists no GPU and where torch sees none.

    Args:
        choice (str): train.device, "auto", "cpu" or "cuda".
        local_rank (int): this process's rank on its host; picks its GPU.
        state (CudaState): the probe's result.

    Returns:
        torch.device: cpu, or cuda:<local_rank>.
    """
    if choice == "cpu":
        return torch.device("cpu")
    problem = cuda_problem(state)
    if problem is not None:
        hint = "; or set train.device=cpu to train on the CPU"
        raise DeviceError(f"train.device={choice}: {problem}{hint}")
    if not state.available:
        if choice == "auto":
            return torch.device("cpu")
        raise DeviceError("train.device=cuda but this machine has no GPU (the driver lists none)")
    count = len(state.devices)
    if local_rank >= count:
        raise DeviceError(
            f"local rank {local_rank} has no GPU: this host shows {count} "
            f"(launch at most {count} processes per host, --nproc_per_node {count})"
        )
    return torch.device("cuda", local_rank)
