"""Validation AUCs during training: each rank scores its share, rank 0 computes the metrics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.distributed.collectives import gather_to_main, on_main
from dmmp_rec.inference.split_scores import score_rows
from dmmp_rec.metrics import auc


@torch.no_grad()
def _score_here(
    model: nn.Module, batches: Iterable[Batch], features: FeaturesConfig, device: torch.device
) -> dict[str, np.ndarray]:
    was_training = model.training
    model.eval()
    try:
        return score_rows(model, batches, features, device)
    finally:
        model.train(was_training)


def score_batches(
    model: nn.Module, batches: Iterable[Batch], features: FeaturesConfig, device: torch.device
) -> dict[str, np.ndarray] | None:
    """Labels and model outputs for every impression of `batches` of every rank, on rank 0
    (None on the others), scored in eval mode (the model's mode is restored afterwards)."""
    return gather_to_main(_score_here(model, batches, features, device))


def validation_metrics(
    model: nn.Module, batches: Iterable[Batch], features: FeaturesConfig, device: torch.device
) -> dict[str, float]:
    """`teacher_and_student_aucs` of every rank's `batches`: each rank scores its share, rank 0
    computes the AUCs, every rank gets them (best-checkpoint choices must agree)."""
    return on_main(_score_here(model, batches, features, device), teacher_and_student_aucs)


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
