"""`train.precision`: bf16 autocast of the dense part (networks in bf16, losses in fp32), the
custom autograd functions under autocast, TF32 only on CUDA, and a short bf16 training run on
the tiny world with finite losses and the device recorded in summary.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_support import _batch, _model
from support import tiny_config
from torch.utils._python_dispatch import TorchDispatchMode

from dmmp_rec.config import ConfigError
from dmmp_rec.model.precision import (
    as_float32,
    dense_autocast,
    enable_tf32,
    precision_problem,
)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class MatmulDtypes(TorchDispatchMode):
    """Records the dtype of every matrix product the forward runs (after autocast's casts)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.seen.add(out.dtype)
        return out


def _step(dtype: torch.dtype | None) -> tuple[torch.Tensor, dict, set[torch.dtype], dict]:
    model = _model(seed=3, loss={"distill_candidates": 3})  # the _BlockProduct path too
    model.dense.autocast_dtype = dtype
    with MatmulDtypes() as products:
        objective, out = model(_batch(seed=4))
    objective.backward()
    return objective, out.losses, products.seen, _grads(model)


def test_bf16_autocasts_the_networks_and_keeps_losses_and_gradients_fp32() -> None:
    obj32, losses32, seen32, grads32 = _step(None)
    obj16, losses16, seen16, grads16 = _step(torch.bfloat16)
    assert seen32 == {torch.float32} and torch.bfloat16 in seen16  # fp32: the loss terms'
    assert obj16.dtype == torch.float32 and torch.isfinite(obj16)
    assert {v.dtype for v in losses16.values()} == {torch.float32}
    assert obj16.item() != obj32.item()  # bf16 really ran
    assert obj16.item() == pytest.approx(obj32.item(), rel=2e-2)
    assert grads16.keys() == grads32.keys() and len(grads16) > 20
    assert all(g.dtype == torch.float32 for g in grads16.values())
    # bf16 keeps ~3 significant digits: the whole gradient points the same way; a few tiny
    # biases of the PLE (sums of cancelling terms) differ more, none turns around
    flat32 = torch.cat([grads32[n].flatten() for n in grads32])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    assert F.cosine_similarity(flat16, flat32, dim=0).item() > 0.999
    for name, g32 in grads32.items():
        if g32.abs().sum() > 0:
            cos = F.cosine_similarity(grads16[name].flatten(), g32.flatten(), dim=0).item()
            assert cos > 0.8, name


def test_every_product_of_the_networks_runs_in_bf16() -> None:
    model = _model(seed=3, loss={"distill_candidates": 3})
    groups = model.sparse(_batch(seed=4).features)
    with dense_autocast("cpu", torch.bfloat16), MatmulDtypes() as products:
        t, s, candidates, _ = model.dense._networks(groups)
    assert products.seen == {torch.bfloat16} and candidates is not None
    assert t.logit_ctr.dtype == torch.bfloat16 and as_float32(t).logit_ctr.dtype == torch.float32


def test_as_float32_casts_low_precision_floats_only() -> None:
    tree = (torch.ones(2, dtype=torch.bfloat16), None, [torch.arange(3)], {"x": torch.ones(1)})
    out = as_float32(tree)
    assert out[0].dtype == torch.float32 and out[1] is None
    assert out[2][0].dtype == torch.int64 and out[3]["x"] is tree[3]["x"]


def test_tf32_and_bf16_checks_leave_the_cpu_alone() -> None:
    assert enable_tf32(torch.device("cpu")) is False
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_tf32_flags_read_consistently_through_both_apis() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    mkldnn = torch.backends.mkldnn.matmul.fp32_precision
    try:
        assert enable_tf32(torch.device("cuda", 0)) is True  # only flags: no GPU needed
        assert torch.backends.cuda.matmul.allow_tf32 is True  # legacy readers do not raise
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.backends.mkldnn.matmul.fp32_precision == mkldnn  # the CPU's untouched
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert precision_problem("bf16", torch.device("cpu")) is None
    assert precision_problem("fp32", torch.device("cpu")) is None


def test_precision_is_validated_on_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.precision"):
        tiny_config(tmp_path, tmp_path / "run", "train.precision=fp16")


def test_bf16_trains_a_few_steps_with_finite_losses(tiny_world: Path, tmp_path: Path) -> None:
    from dmmp_rec.distributed.env import init_distributed, shutdown
    from dmmp_rec.train.trainer import train

    cfg = tiny_config(
        tiny_world,
        tmp_path / "run",
        "train.precision=bf16",
        "train.max_steps=6",
        "train.log_every=2",
        "train.device=auto",
    )
    env = init_distributed(cfg.train.device)
    try:
        summary = train(cfg, env)
    finally:
        shutdown()
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["precision"] == "bf16" and saved["tf32"] is False
    assert (saved["device"], saved["backend"], saved["world_size"]) == ("cpu", "gloo", 1)
    assert saved["gpu_name"] is None  # auto on a host whose driver lists no GPU: the CPU
    losses = {k: v for k, v in summary["last_logged"].items() if k.startswith("loss/")}
    assert losses and all(math.isfinite(v) for v in losses.values())
    assert 0.0 < saved["validation"]["val/teacher_ctr_auc"] < 1.0
