"""Evaluate the torch-rechub peers with the evaluation engineer's functions, so every number of
the comparison comes from one implementation: `teacher_metrics` for the rankers on the test
split, `evaluate_retrieval` (same encoders, FAISS index, oracle sample) for DSSM."""

from __future__ import annotations

import numpy as np
import torch

from dmmp_rec.compare.rechub.models import RechubPeer, RechubRetriever
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.console.progress import track
from dmmp_rec.data.catalogue import truth_keys
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.eval.report import load_truth
from dmmp_rec.eval.retrieval_eval import RetrievalOptions, evaluate_retrieval
from dmmp_rec.eval.teacher_eval import bayes_metrics, teacher_metrics


@torch.no_grad()
def score_split(
    peer: RechubPeer, cfg: DmmpConfig, split: str, device: torch.device, progress: bool
) -> dict[str, np.ndarray]:
    """Labels, ids (for the Bayes ceiling) and the peer's pctr / pcvr / pctcvr for every row of
    `split` (file order)."""
    peer.model.eval()
    ids = truth_keys(cfg.features)
    cols: dict[str, list[np.ndarray]] = {}
    loader = loader_for_split(cfg, split, drop_last=False)
    batches = track(loader, f"scoring {split}", "batch", enabled=progress)
    for batch in batches:
        jts = batch.features.to_dict()
        for name, key in ids.items():
            cols.setdefault(name, []).append(jts[key].values().numpy())
        batch = batch.to(device)
        probs = peer.probabilities(batch.features)
        for key, value in (
            ("click", batch.click),
            ("conversion", batch.conversion),
            *probs.items(),
        ):
            cols.setdefault(key, []).append(value.float().cpu().numpy().reshape(-1))
    return {k: np.concatenate(v) for k, v in cols.items()}


def evaluate_peer(
    peer: RechubPeer,
    cfg: DmmpConfig,
    options: RetrievalOptions,
    device: torch.device,
    progress: bool = True,
) -> dict[str, object]:
    """A report shaped like `dmmp_rec.eval.report.evaluate`'s: `teacher` (and `bayes` on the
    synthetic world) for the rankers, `retrieval` and `references` for DSSM."""
    truth = load_truth(cfg)
    if peer.kind == "dssm":
        peer.model.eval()
        return evaluate_retrieval(
            RechubRetriever(peer), cfg, truth, options, device, progress
        ).to_dict()
    rows = score_split(peer, cfg, options.split, device, progress)
    report: dict[str, object] = {"teacher": teacher_metrics(rows)}
    if truth is not None:
        report["bayes"] = bayes_metrics(rows, truth)
    return report
