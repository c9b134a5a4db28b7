"""Impression-level metrics of the teacher (and the student's scores) on a labelled split, with
the Bayes ceilings of the synthetic world beside them.

Conventions (ESMM): CTR and CTCVR are scored over all impressions, CVR over clicked impressions
only. Every rank scores its share of the split (the loader without drop_last gives every rank
the same number of non-empty batches, so DMP's collectives stay matched); the rows are gathered
in rank order, which is the split's file order, so the numbers do not depend on the world size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.catalogue import id_features
from dmmp_rec.data.world import GroundTruth
from dmmp_rec.eval.metrics import auc, calibration, log_loss

if TYPE_CHECKING:
    from dmmp_rec.model.dmmp import DMMPModel

# The synthetic world's hour feature (dmmp_rec.data.synthetic_features.KNOWN): the true pCTR
# depends on it, so the Bayes ceiling reads it per row when the config has it.
HOUR_FEATURE = "ctx_hour"


def gather_rows(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate every rank's arrays in rank order (a no-op on one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return arrays
    parts: list[dict[str, np.ndarray] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, arrays)
    return {k: np.concatenate([p[k] for p in parts if p is not None]) for k in arrays}


@torch.no_grad()
def score_rows(
    model: nn.Module,
    batches: Iterable[Batch],
    features: FeaturesConfig,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """This rank's labels, model scores and (user id, item id, hour) of every row of
    `batches`; `model` is the DMP or a DMMPModel (`score` runs the sharded EBC)."""
    user_key, item_key = id_features(features)
    keys = [user_key, item_key] + ([HOUR_FEATURE] if HOUR_FEATURE in features.names else [])
    cols: dict[str, list[np.ndarray]] = {}
    # a DMP's DMMPModel (or the model itself): scoring only, no candidates or losses
    scorer = cast("DMMPModel", getattr(model, "module", model))

    def add(name: str, value: torch.Tensor) -> None:
        cols.setdefault(name, []).append(value.detach().cpu().numpy().reshape(-1))

    for batch in batches:
        jts = batch.features.to_dict()
        for key, name in zip(keys, ("user_id", "item_id", "hour"), strict=False):
            add(name, jts[key].values())
        batch = batch.to(device)
        out = scorer.score(batch)
        add("click", batch.click)
        add("conversion", batch.conversion)
        for key, value in out.row_scores().items():
            add(key, value.float())
    return {k: np.concatenate(v) for k, v in cols.items()}


def _rate_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(labels, probs),
        "log_loss": log_loss(labels, probs),
        "predicted_rate": float(np.mean(probs)) if probs.size else float("nan"),
        "observed_rate": float(np.mean(labels)) if labels.size else float("nan"),
        "calibration": calibration(labels, probs),
    }


def probability_metrics(
    click: np.ndarray,
    conversion: np.ndarray,
    pctr: np.ndarray,
    pcvr: np.ndarray,
    pctcvr: np.ndarray,
) -> dict[str, dict[str, float]]:
    """AUC, log loss and calibration of CTR (all rows), CVR (clicked rows), CTCVR (all rows)."""
    clicked = click > 0
    return {
        "ctr": _rate_metrics(click, pctr),
        "cvr": _rate_metrics(conversion[clicked], pcvr[clicked]),
        "ctcvr": _rate_metrics(conversion, pctcvr),
    }


def teacher_metrics(rows: dict[str, np.ndarray]) -> dict[str, object]:
    """The teacher's probabilities against the labels, with the row counts they rest on."""
    click, conv = rows["click"], rows["conversion"]
    out: dict[str, object] = dict(
        probability_metrics(click, conv, rows["pctr"], rows["pcvr"], rows["pctcvr"])
    )
    out["rows"] = int(click.size)
    out["clicks"] = int(click.sum())
    out["conversions"] = int(conv.sum())
    return out


def student_metrics(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """AUCs of the student's impression scores: s_c for clicks, s_v and the fused score for
    conversions (all rows), and the fused score for clicks."""
    click, conv = rows["click"], rows["conversion"]
    out = {}
    if "s_c" in rows:
        out["s_c_ctr_auc"] = auc(click, rows["s_c"])
    if "s_v" in rows:
        out["s_v_ctcvr_auc"] = auc(conv, rows["s_v"])
    if "fused" in rows:
        out["fused_ctcvr_auc"] = auc(conv, rows["fused"])
        out["fused_ctr_auc"] = auc(click, rows["fused"])
    return out


def bayes_metrics(rows: dict[str, np.ndarray], truth: GroundTruth) -> dict[str, object]:
    """The same metrics with the true probabilities as scores: the best any model can reach on
    these rows (up to sampling noise)."""
    u, i = rows["user_id"], rows["item_id"]
    hours = rows.get("hour")
    pctr = truth.pctr(u, i, hours)
    pcvr = truth.pcvr(u, i)
    out: dict[str, object] = dict(
        probability_metrics(rows["click"], rows["conversion"], pctr, pcvr, pctr * pcvr)
    )
    out["hour"] = "per row" if hours is not None else f"fixed {truth.eval_hour}"
    return out
