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
from dmmp_rec.metrics import impression_aucs


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
    """The `val/*` metrics (summary.json, best.json, TensorBoard) of `metrics.impression_aucs`,
    the computation evaluation's reports use too."""
    aucs = impression_aucs(scores)
    metrics = {
        "val/teacher_ctr_auc": aucs.teacher_ctr,
        "val/teacher_ctcvr_auc": aucs.teacher_ctcvr,
        "val/teacher_cvr_auc": aucs.teacher_cvr,
        "val/rows": float(aucs.rows),
    }
    students = (
        ("val/student_ctr_auc", aucs.student_ctr),
        ("val/student_ctcvr_auc", aucs.student_ctcvr),
        ("val/student_fused_ctcvr_auc", aucs.fused_ctcvr),
    )
    metrics.update({key: value for key, value in students if value is not None})
    return metrics
