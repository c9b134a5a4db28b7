"""No silent fall-back to the CPU: `train.device=auto` on a host whose driver lists a GPU that
torch cannot use stops with the reason (one DmmpError line), checked here with injected
CudaStates (what the driver lists, what torch's build and probe say); a host without a GPU
still trains on the CPU, and this machine's own probe says so."""

from __future__ import annotations

import pytest
import torch

from dmmp_rec.distributed.cuda_probe import (
    CudaState,
    DeviceError,
    cuda_problem,
    min_capability,
    pick_device,
    probe_cuda,
)
from dmmp_rec.distributed.env import device_report, init_distributed, resolve_device, shutdown
from dmmp_rec.errors import DmmpError

ARCH = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
CPU_HOST = CudaState(visible_gpus=0, torch_version="2.13.0+cpu", torch_cuda=None, available=False)
CPU_TORCH_ON_GPU_HOST = CudaState(4, "2.13.0+cpu", None, False)
OLD_DRIVER = CudaState(
    2,
    "2.13.0",
    "13.0",
    False,
    init_warning="CUDA initialization: The NVIDIA driver on your system is too old (found "
    "version 12040).",
)
V100 = CudaState(
    1, "2.13.0", "13.0", True, devices=(("Tesla V100-SXM2-32GB", (7, 0)),), arch_list=ARCH
)
H100 = CudaState(
    2, "2.13.0", "13.0", True, devices=(("NVIDIA H100 80GB HBM3", (9, 0)),) * 2, arch_list=ARCH
)


def test_a_host_without_gpus_trains_on_the_cpu() -> None:
    assert cuda_problem(CPU_HOST) is None
    assert pick_device("auto", 0, CPU_HOST) == torch.device("cpu")
    with pytest.raises(DeviceError, match="train.device=cuda but this machine has no GPU"):
        pick_device("cuda", 0, CPU_HOST)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (CPU_TORCH_ON_GPU_HOST, r"CPU-only build \(torch.version.cuda is None\).*lists 4 GPU"),
        (OLD_DRIVER, r"cannot use the 2 GPU.*driver on your system is too old.*driver >= 580"),
        (V100, r"GPU 0 \(Tesla V100-SXM2-32GB\) has compute capability 7.0.*7.5 and newer"),
    ],
)
def test_auto_with_an_unusable_gpu_stops_with_the_reason(state: CudaState, reason: str) -> None:
    for choice in ("auto", "cuda"):
        with pytest.raises(DeviceError, match=reason) as caught:
            pick_device(choice, 0, state)
        message = str(caught.value)
        assert isinstance(caught.value, DmmpError) and "\n" not in message
        assert message.startswith(f"train.device={choice}: ") and "train.device=cpu" in message
    assert pick_device("cpu", 0, state) == torch.device("cpu")  # asked for: no error


def test_usable_gpus_and_a_rank_past_them() -> None:
    assert cuda_problem(H100) is None
    assert pick_device("auto", 1, H100) == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="local rank 2 has no GPU: this host shows 2"):
        pick_device("auto", 2, H100)


def test_oldest_capability_comes_from_torchs_arch_list() -> None:
    assert min_capability(ARCH) == (7, 5)
    assert min_capability(("sm_80", "sm_90", "compute_90")) == (8, 0)
    assert min_capability(()) == (7, 5)


def test_this_machines_probe_and_report() -> None:
    state = probe_cuda()
    assert state.torch_cuda == torch.version.cuda and state.torch_version == torch.__version__
    if not state.available and state.visible_gpus == 0:  # this CPU machine
        assert resolve_device("auto", 0, state) == torch.device("cpu")
    env = init_distributed("cpu")
    try:
        report = device_report(env)
    finally:
        shutdown()
    assert report["device"] == "cpu" and report["backend"] == "gloo"
    assert report["world_size"] == 1 and report["gpu_name"] is None
