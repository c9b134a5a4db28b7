"""Which part of a trained DMMP carries its conversion signal: click tower, conversion tower,
gate, or the teacher it distils from.

    python scripts/diagnose_towers.py RUN_DIR [--users N]

RUN_DIR is a training run (train.out, e.g. reports/runs/dmmp) on the synthetic world. For a
seeded sample of N users it scores the whole catalogue with s_c alone, s_v alone, the fused
score under the learned gate and under fixed gates, the teacher's pCTCVR and pCTR, and the true
pCTR, and prints each one's expected conversions@50 over the oracle's (as `dmmp-rec eval`) and
expected clicks@50. One process; it reads the run's own config.json and newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmmp_rec.config import DmmpConfig, config_from_dict
from dmmp_rec.console import benign_warnings
from dmmp_rec.data.catalogue import item_side, load_catalogue, user_side
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.data.pair_features import pair_features_for
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.runtime import load_for_inference
from dmmp_rec.eval import ranking
from dmmp_rec.eval.report import load_truth
from dmmp_rec.eval.teacher_retrieval import PairCross

K = 50
GATES = (0.25, 0.5, 0.75)  # fixed click shares of the fused score


@dataclass
class _Scores:
    """Every scorer's scores of the sampled users x the whole catalogue."""

    s_c: np.ndarray  # click tower
    s_v: np.ndarray  # conversion tower
    gate: np.ndarray  # [users, 2] learned gate
    tau: float
    teacher_ctcvr: np.ndarray
    teacher_ctr: np.ndarray


def _load(run: Path) -> tuple[DmmpConfig, Any, GroundTruth]:
    """The run's own config, its newest checkpoint's model and the world's ground truth."""
    raw = json.loads((run / "config.json").read_text())
    raw.pop("source", None)
    cfg = config_from_dict(raw)
    env = init_distributed("cpu")
    model = load_for_inference(cfg, env, run / "checkpoints").module
    truth = load_truth(cfg)
    if truth is None:
        raise SystemExit(f"{cfg.data.path}: no ground truth (synthetic worlds only)")
    return cfg, model, truth


def _teacher_scores(
    cfg: DmmpConfig, model: Any, g: dict, items: torch.Tensor, user_ids: np.ndarray, cat: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's pCTCVR and pCTR of every (user, item) pair, one user at a time."""
    cross_of = None
    if cfg.features.group("cross"):  # the teacher's pair features, for every pair
        source = pair_features_for(cfg)
        if source is None:
            raise SystemExit(f"{cfg.data.path}: cannot compute cross features for all pairs")
        cross_of = PairCross(model, cfg.features, source, cat.item_ids, torch.device("cpu"))
    t_ctcvr, t_ctr = [], []
    for k in range(len(user_ids)):
        parts = [g["user"][k : k + 1].expand(len(items), -1), items]
        if "context" in g:
            parts.append(g["context"][k : k + 1].expand(len(items), -1))
        if cross_of is not None:
            parts.append(cross_of(int(user_ids[k])))
        t = model.dense.teacher(torch.cat(parts, 1))
        t_ctcvr.append(t.pctcvr.numpy())
        t_ctr.append(t.pctr.numpy())
    return np.stack(t_ctcvr), np.stack(t_ctr)


@torch.no_grad()
def _scores(cfg: DmmpConfig, model: Any, cat: Any, rows: np.ndarray) -> _Scores:
    student = model.dense.student
    g = model.sparse.lookup(
        table_kjt(cat.users.take(rows), user_side(cfg.features)), ("user", "context")
    )
    items = model.sparse.lookup(table_kjt(cat.items, item_side(cfg.features)), ("item",))["item"]
    u = student.user_embedding(g["user"], g.get("context"))
    gate = student.gate(g["user"]).numpy()
    tau = student.tau()
    i_c, i_v = student.item_embeddings(items)
    s_c = (u @ i_c.T / tau).numpy()
    s_v = s_c if i_v is None else (u @ i_v.T / tau).numpy()
    t_ctcvr, t_ctr = _teacher_scores(cfg, model, g, items, cat.user_ids[rows], cat)
    return _Scores(s_c, s_v, gate, float(tau), t_ctcvr, t_ctr)


def _report(name: str, scores: np.ndarray, true_ctr: np.ndarray, true_ctcvr: np.ndarray) -> None:
    """One scorer's expected conversions@K over the oracle's, and its expected clicks@K."""
    best = np.take_along_axis(true_ctcvr, ranking.top_k(true_ctcvr, K), 1)
    top = ranking.top_k(scores, K)
    gains = np.take_along_axis(true_ctcvr, top, 1)
    conv = np.nanmean(ranking.sum_ratio_at(gains, best, [K]))
    clicks = np.take_along_axis(true_ctr, top, 1).sum(1).mean()
    print(f"{name:>30}: expected conversions@{K} / oracle {conv:.4f}, clicks {clicks:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--users", type=int, default=300)
    args = p.parse_args()
    benign_warnings.install()
    cfg, model, truth = _load(args.run)
    cat = load_catalogue(cfg)
    rows = np.sort(np.random.default_rng(0).choice(len(cat.user_ids), args.users, replace=False))
    user_ids = cat.user_ids[rows]
    sc = _scores(cfg, model, cat, rows)
    true_ctr, true_ctcvr = truth.score_matrix(user_ids, cat.item_ids)
    print(
        f"{args.run}: {len(rows)} users x {sc.s_c.shape[1]} items; mean gate (click, "
        f"conversion) {sc.gate.mean(0).round(3).tolist()}, tau {sc.tau:.4f}"
    )
    named = [
        ("click tower s_c", sc.s_c),
        ("conversion tower s_v", sc.s_v),
        ("fused, learned gate", sc.gate[:, :1] * sc.s_c + sc.gate[:, 1:] * sc.s_v),
        *[(f"fused, fixed gate {w:.2f} click", w * sc.s_c + (1 - w) * sc.s_v) for w in GATES],
        ("teacher pCTCVR", sc.teacher_ctcvr),
        ("teacher pCTR", sc.teacher_ctr),
        ("true pCTR", true_ctr),
    ]
    for name, scores in named:
        _report(name, scores, true_ctr, true_ctcvr)
    shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
