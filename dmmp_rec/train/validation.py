"""Validation AUCs during training: each rank scores its share, rank 0 computes the metrics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dmmp_rec.data.batch import Batch
from dmmp_rec.eval.metrics import auc

# model outputs collected per impression
_COLLECT = ("pctr", "pctcvr", "pcvr", "s_c", "s_v", "fused")


def _gather(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return arrays
    parts: list[dict[str, np.ndarray] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, arrays)
    return {k: np.concatenate([p[k] for p in parts if p is not None]) for k in arrays}


@torch.no_grad()
def score_batches(model: nn.Module, batches: Iterable[Batch], device: torch.device) -> dict:
    """Labels and model outputs for every impression of `batches`, gathered from all ranks."""
    was_training = model.training
    model.eval()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("click", "conversion", *_COLLECT)}
    try:
        for batch in batches:
            batch = batch.to(device)
            _, out = model(batch)
            cols["click"].append(batch.click.cpu().numpy())
            cols["conversion"].append(batch.conversion.cpu().numpy())
            for key in _COLLECT:
                if key in out:
                    cols[key].append(out[key].float().cpu().numpy().reshape(-1))
    finally:
        model.train(was_training)
    arrays = {k: np.concatenate(v) for k, v in cols.items() if v}
    return _gather(arrays)


def teacher_and_student_aucs(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """CTR AUC over all impressions, CVR AUC over clicked ones (ESMM), CTCVR AUC over all."""
    click, conv = scores["click"], scores["conversion"]
    clicked = click > 0
    metrics = {
        "val/teacher_ctr_auc": auc(click, scores["pctr"]),
        "val/teacher_ctcvr_auc": auc(conv, scores["pctcvr"]),
        "val/teacher_cvr_auc": auc(conv[clicked], scores["pcvr"][clicked]),
        "val/rows": float(click.size),
    }
    if "s_c" in scores:
        metrics["val/student_ctr_auc"] = auc(click, scores["s_c"])
    if "s_v" in scores:
        metrics["val/student_ctcvr_auc"] = auc(conv, scores["s_v"])
    if "fused" in scores:
        metrics["val/student_fused_ctcvr_auc"] = auc(conv, scores["fused"])
    return metrics
