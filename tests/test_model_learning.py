"""A short single-process training run on the tiny synthetic world: every loss term falls and
the teacher ranks held-out (validation-day) clicks with AUC > 0.6."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from support import tiny_config

from dmmp_rec.config import DmmpConfig
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.model import build_model
from dmmp_rec.train.validation import score_batches

STEPS, WINDOW = 300, 30


def _config(world: Path) -> DmmpConfig:
    return tiny_config(world, world / "unused", "model.loss.distill_warmup_steps=50")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: one thread is fastest and fair to the other jobs on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_training_lowers_every_loss_and_teacher_ranks_clicks(
    one_thread: None, tiny_world: Path
) -> None:
    torch.manual_seed(0)
    cfg = _config(tiny_world)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    train = loader_for_split(cfg, "train").forever()
    history: dict[str, list[float]] = {t: [] for t in model.loss_terms}
    model.train()
    for step in range(STEPS):
        loss, out = model(next(train))
        opt.zero_grad()
        loss.backward()
        opt.step()
        for t in history:
            history[t].append(float(out.losses[t]))
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
    assert int(model.train_step) == STEPS

    first = {t: np.mean(v[:WINDOW]) for t, v in history.items()}
    last = {t: np.mean(v[-WINDOW:]) for t, v in history.items()}
    for t in history:
        print(f"{t}: {first[t]:.4f} -> {last[t]:.4f}")
    rising = [t for t in history if not last[t] < first[t]]
    assert not rising, f"loss terms that did not fall: {rising}"

    held_out = score_batches(model, loader_for_split(cfg, "val"), cfg.features, torch.device("cpu"))
    assert held_out["click"].size == 10_000  # the whole val day, no row dropped
    auc_ctr = roc_auc_score(held_out["click"], held_out["pctr"])
    auc_student = roc_auc_score(held_out["click"], held_out["s_c"])
    auc_ctcvr = roc_auc_score(held_out["conversion"], held_out["pctcvr"])
    print(
        f"held-out AUC: teacher ctr {auc_ctr:.3f}, ctcvr {auc_ctcvr:.3f}; student {auc_student:.3f}"
    )
    assert auc_ctr > 0.6
    assert auc_student > 0.6
