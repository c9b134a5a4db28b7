"""A test-side guard for the device rule of collectives, which runs on CPU gloo ranks.

NCCL takes CUDA tensors only (on the rank's GPU); gloo takes CPU tensors. On a machine without a
GPU the difference is invisible: a tensor our code meant for the GPU and one it left on the CPU
are both CPU tensors. `device_guard(NCCL)` makes a gloo job look like an NCCL job to our code:

- the one place that says "this group's device", `dmmp_rec.distributed.env.collective_device`,
  answers cuda:<rank> (its backend probe reports nccl);
- a stand-in device mapping: a tensor placed on a CUDA device (`torch.zeros(..., device=cuda)`,
  `.to(cuda)`, `.cuda()`) is made in CPU memory as a `CudaStandIn`, which reports device
  cuda:<rank>, stays a stand-in through every op, refuses `.numpy()` as a CUDA tensor does, and
  becomes a plain tensor again with `.cpu()` / `.to("cpu")`;
- torch.distributed's collectives are wrapped: a call from our code (anything outside torch,
  torchrec and fbgemm, whose own collectives carry the model's tensors on the model's device)
  whose tensors are of a device type the rule refuses raises DeviceRuleError before any
  communication; accepted calls run the real gloo collective on the stand-ins' CPU memory.

Every checked call is logged (name, caller, devices), so a test can assert that the collectives
it means to check really went through the guard. `device_guard(GLOO)` applies gloo's own rule
(CPU tensors only) without any stand-in.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

import dmmp_rec.distributed.env as dist_env


class DeviceRuleError(AssertionError):
    """A collective got a tensor on a device its backend does not take."""


@dataclass(frozen=True)
class Rule:
    backend: str
    device_type: str  # the only device type the backend's collectives take


NCCL = Rule("nccl", "cuda")
GLOO = Rule("gloo", "cpu")

TENSOR_COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "broadcast",
    "reduce",
    "all_to_all",
    "all_to_all_single",
    "gather",
    "scatter",
    "send",
    "recv",
    "isend",
    "irecv",
)
OBJECT_COLLECTIVES = ("all_gather_object", "broadcast_object_list", "gather_object")
INTERNAL_PACKAGES = ("torch", "torchrec", "fbgemm_gpu")


@dataclass
class Call:
    name: str
    caller: str  # module:line
    devices: list[str]


@dataclass
class GuardLog:
    rule: Rule
    calls: list[Call] = field(default_factory=list)
    internal_calls: int = 0  # collectives of torch / torchrec themselves, not checked

    def names_from(self, module: str) -> list[str]:
        return [c.name for c in self.calls if c.caller.split(":")[0] == module]


_index = 0  # the stand-in CUDA device of this process (its rank)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The CPU tensor behind a stand-in (same memory)."""
    with torch._C.DisableTorchFunction():
        return torch.Tensor.as_subclass(t, torch.Tensor)


class CudaStandIn(torch.Tensor):
    """CPU memory standing for a tensor on cuda:<rank> (see the module docstring)."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", _index)

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        if func is torch.Tensor.numpy:
            raise TypeError(
                f"can't convert cuda:{_index} device type tensor to numpy. Use Tensor.cpu() to "
                "copy the tensor to host memory first. (device guard stand-in)"
            )
        return super().__torch_function__(func, types, args, kwargs or {})


def _wrap(out: Any) -> Any:
    if isinstance(out, torch.Tensor) and not isinstance(out, CudaStandIn):
        with torch._C.DisableTorchFunction():
            return torch.Tensor.as_subclass(out, CudaStandIn)
    if isinstance(out, tuple | list):
        return type(out)(_wrap(o) for o in out)
    return out


def _target(func: Any, args: tuple, kwargs: dict) -> torch.device | None:
    """The device a call asks to put its result on, if it names one."""
    if func is torch.Tensor.cuda:
        return torch.device("cuda", _index)
    if func is torch.Tensor.cpu:
        return torch.device("cpu")
    if func is torch.Tensor.to:
        device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
        return device
    device = kwargs.get("device")
    return None if device is None else torch.device(device)


class _StandInMode(TorchFunctionMode):
    """Maps CUDA placements to CudaStandIn CPU tensors, and `.cpu()` back to plain tensors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        kwargs = dict(kwargs or {})
        target = _target(func, args, kwargs)
        if target is None or target.type not in ("cuda", "cpu"):
            return func(*args, **kwargs)
        if target.type == "cpu":
            out = func(*args, **kwargs)
            if isinstance(out, CudaStandIn):  # a real device-to-host copy: new memory
                return _plain(out).clone()
            return out
        if func in (torch.Tensor.to, torch.Tensor.cuda):
            source = args[0]
            dtype = (
                torch._C._nn._parse_to(*args[1:], **kwargs)[1] if func is torch.Tensor.to else None
            )
            if isinstance(source, CudaStandIn) and dtype in (None, source.dtype):
                return source
            copy = torch.Tensor.to(_plain(source), device="cpu", dtype=dtype, copy=True)
            return _wrap(copy)
        kwargs["device"] = "cpu"
        return _wrap(func(*args, **kwargs))


def _tensors(node: Any) -> Iterator[torch.Tensor]:
    if isinstance(node, torch.Tensor):
        yield node
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _tensors(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _tensors(item)


def _unwrap(node: Any) -> Any:
    if isinstance(node, CudaStandIn):
        return _plain(node)
    if isinstance(node, list | tuple):
        return type(node)(_unwrap(n) for n in node)
    return node


def _device_of(t: torch.Tensor) -> torch.device:
    return torch.device("cuda", _index) if isinstance(t, CudaStandIn) else t.device


def _caller() -> tuple[str, int]:
    frame = sys._getframe(2)
    return frame.f_globals.get("__name__", "?"), frame.f_lineno


def _is_internal(module: str) -> bool:
    return module.split(".")[0] in INTERNAL_PACKAGES


def _refuse(rule: Rule, name: str, where: str, what: str) -> DeviceRuleError:
    return DeviceRuleError(
        f"{name} called from {where} with {what}, but {rule.backend} collectives take "
        f"{rule.device_type} tensors only: put it on collective_device() first"
    )


def _checked_tensor_collective(name: str, original: Any, log: GuardLog) -> Any:
    rule = log.rule

    def collective(*args: Any, **kwargs: Any) -> Any:
        module, line = _caller()
        if _is_internal(module):
            log.internal_calls += 1
            return original(*args, **kwargs)
        where = f"{module}:{line}"
        devices = [_device_of(t) for t in _tensors((args, kwargs))]
        for t, device in zip(_tensors((args, kwargs)), devices, strict=True):
            if device.type != rule.device_type:
                what = f"a {device} tensor (dtype {t.dtype}, shape {tuple(t.shape)})"
                raise _refuse(rule, name, where, what)
        log.calls.append(Call(name, where, [str(d) for d in devices]))
        return original(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})

    return collective


def _checked_object_collective(name: str, original: Any, log: GuardLog) -> Any:
    """Object collectives pickle into a tensor on the device torch picks for the backend (the
    current CUDA device under nccl); an explicit `device` must follow the rule."""
    rule = log.rule

    def collective(*args: Any, **kwargs: Any) -> Any:
        module, line = _caller()
        if _is_internal(module):
            log.internal_calls += 1
            return original(*args, **kwargs)
        where = f"{module}:{line}"
        device = kwargs.pop("device", None)
        devices = []
        if device is not None:
            device = torch.device(device)
            if device.type != rule.device_type:
                raise _refuse(rule, name, where, f"device={device}")
            devices.append(str(device))
        log.calls.append(Call(name, where, devices))
        return original(*args, **kwargs)  # the real group is gloo: its own (CPU) device

    return collective


def _checked_barrier(original: Any, log: GuardLog) -> Any:
    def barrier(*args: Any, **kwargs: Any) -> Any:
        module, line = _caller()
        if _is_internal(module):
            log.internal_calls += 1
            return original(*args, **kwargs)
        ids = kwargs.pop("device_ids", None)
        if ids is not None and log.rule.device_type != "cuda":
            raise _refuse(log.rule, "barrier", f"{module}:{line}", f"device_ids={ids}")
        log.calls.append(Call("barrier", f"{module}:{line}", []))
        return original(*args, **kwargs)

    return barrier


@contextlib.contextmanager
def device_guard(rule: Rule, index: int | None = None) -> Iterator[GuardLog]:
    """Check every collective of our code against `rule` while the block runs (see the module
    docstring). `index`: this process's stand-in GPU (default: its rank)."""
    global _index
    log = GuardLog(rule)
    saved: dict[str, Any] = {}
    patches: dict[str, Any] = {}
    for name in TENSOR_COLLECTIVES:
        patches[name] = _checked_tensor_collective(name, getattr(dist, name), log)
    for name in OBJECT_COLLECTIVES:
        patches[name] = _checked_object_collective(name, getattr(dist, name), log)
    patches["barrier"] = _checked_barrier(dist.barrier, log)
    probe = (dist_env._group_backend, dist_env._current_cuda_index)
    previous_index = _index
    stack = contextlib.ExitStack()
    try:
        for name, wrapper in patches.items():
            saved[name] = getattr(dist, name)
            setattr(dist, name, wrapper)
        if rule.device_type == "cuda":
            _index = dist.get_rank() if index is None and dist.is_initialized() else index or 0
            dist_env._group_backend = lambda group: rule.backend
            dist_env._current_cuda_index = lambda: _index
            stack.enter_context(_StandInMode())
        with stack:
            yield log
    finally:
        for name, original in saved.items():
            setattr(dist, name, original)
        dist_env._group_backend, dist_env._current_cuda_index = probe
        _index = previous_index
