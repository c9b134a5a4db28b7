"""`dmmp-rec train --config FILE [overrides]`: one process, or one rank under torchrun/torchx."""

from __future__ import annotations

import argparse
from typing import Any

from dmmp_rec.cli import add_config_arguments, config_from_args

HELP = "train DMMP (DistributedModelParallel; run under torchrun or torchx for several ranks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from dmmp_rec.distributed.env import init_distributed, shutdown
    from dmmp_rec.train.trainer import train

    env = init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
    try:
        summary = train(cfg, env)
    finally:
        shutdown()
    if env.is_main:
        print("\n".join(summary_lines(summary, cfg.train.out)))
    return 0


def summary_lines(summary: dict[str, Any], out: str) -> list[str]:
    """The training summary in a few lines; every figure is in <out>/summary.json."""
    rate = summary.get("samples_per_s")
    resumed = summary.get("resumed_from_step") or 0
    lines = [
        f"trained to step {summary.get('steps')}"
        + (f" (resumed at step {resumed})" if resumed else "")
        + f" on {summary.get('world_size')} process(es) ({_device(summary)}), global batch "
        f"{summary.get('global_batch')}: {summary.get('seconds')} s"
        + (f", {rate:,.0f} samples/s" if rate else "")
    ]
    last = summary.get("last_logged", {})
    if "loss/total" in last:
        gate = last.get("gate/conversion_mean")
        tail = f", mean conversion gate {gate:.3f}" if gate is not None else ""
        lines.append(f"last logged loss {last['loss/total']:.4f}{tail}")
    val = summary.get("validation", {})
    aucs = [(k.removeprefix("val/").removesuffix("_auc"), v) for k, v in val.items()]
    aucs = [(k, v) for k, v in aucs if k.startswith(("teacher_", "student_")) and v == v]
    if aucs:
        lines.append("validation AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in aucs))
    oov = {k: v for k, v in summary.get("oov_counts", {}).items() if v}
    if oov:
        lines.append(f"ids folded by the out-of-range policy: {oov}")
    lines.append(f"checkpoint {summary.get('checkpoint')}; every figure in {out}/summary.json")
    return lines


def _device(summary: dict[str, Any]) -> str:
    """'cuda:0 NVIDIA H100 80GB HBM3, nccl, bf16' (what the run trained on)."""
    where = " ".join(str(summary[k]) for k in ("device", "gpu_name") if summary.get(k))
    parts = [where or "device unknown", summary.get("backend"), summary.get("precision")]
    return ", ".join(str(p) for p in parts if p)
