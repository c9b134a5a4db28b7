"""A short single-process training run on a small planted-signal world: every loss term falls and
the teacher ranks held-out clicks (AUC > 0.6).

The world is generated here (users and items in 5 hidden clusters, click on a cluster match and
item attractiveness, conversion on item quality) so the test does not depend on the data package;
it can move to dmmp_rec.data.synthetic.generate_world once that exists.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import DmmpConfig, config_from_dict
from dmmp_rec.data.batch import Batch
from dmmp_rec.model import build_model

USERS, ITEMS, CLUSTERS, HIST = 200, 300, 5, 3
STEPS, BATCH, WINDOW = 300, 256, 30


def _config() -> DmmpConfig:
    return config_from_dict(
        {
            "features": {
                "user": [
                    {"name": "user_id", "cardinality": USERS, "dim": 8},
                    {"name": "user_seg", "cardinality": 4, "dim": 4},
                    {
                        "name": "user_hist",
                        "cardinality": ITEMS,
                        "dim": 8,
                        "multi_valued": True,
                        "pooling": "mean",
                    },
                ],
                "item": [
                    {"name": "item_id", "cardinality": ITEMS, "dim": 8},
                    {"name": "item_cat", "cardinality": 10, "dim": 4},
                ],
                "context": [{"name": "hour", "cardinality": 24, "dim": 4}],
            },
            "model": {
                "teacher": {"expert_dims": [32], "tower_dims": [16]},
                "student": {"tower_dims": [32], "out_dim": 16, "gate_dims": [8]},
                "loss": {"distill_warmup_steps": 50, "distill_ramp_steps": 50},
            },
        }
    )


class PlantedWorld:
    """Users and items in hidden clusters; click and conversion probabilities are known."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.user_cluster = np.arange(USERS) % CLUSTERS
        self.item_cluster = np.arange(ITEMS) % CLUSTERS  # item_cat = id % 10 reveals it
        self.attractiveness = rng.normal(size=ITEMS)
        self.quality = rng.normal(size=ITEMS)
        by_cluster = [np.flatnonzero(self.item_cluster == k) for k in range(CLUSTERS)]
        self.hist = np.stack([rng.choice(by_cluster[c], HIST) for c in self.user_cluster])

    def batch(self, rng: np.random.Generator, size: int) -> Batch:
        u = rng.integers(0, USERS, size)
        i = rng.integers(0, ITEMS, size)
        match = (self.user_cluster[u] == self.item_cluster[i]).astype(float)
        p_click = 1 / (1 + np.exp(-(-2.5 + 2.5 * match + 0.8 * self.attractiveness[i])))
        p_conv = 1 / (1 + np.exp(-(-1.0 + 1.5 * self.quality[i] + match)))
        click = rng.random(size) < p_click
        conv = click & (rng.random(size) < p_conv)
        cols = [u, u % 4, self.hist[u].reshape(-1), i, i % 10, rng.integers(0, 24, size)]
        lengths = [np.full(size, HIST if k == 2 else 1) for k in range(len(cols))]
        kjt = KeyedJaggedTensor(
            keys=["user_id", "user_seg", "user_hist", "item_id", "item_cat", "hour"],
            values=torch.from_numpy(np.concatenate(cols)).long(),
            lengths=torch.from_numpy(np.concatenate(lengths)).int(),
        )
        return Batch(kjt, torch.from_numpy(click).float(), torch.from_numpy(conv).float())


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: one thread is fastest and fair to the other jobs on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_training_lowers_every_loss_and_teacher_ranks_clicks(one_thread: None) -> None:
    torch.manual_seed(0)
    cfg = _config()
    world = PlantedWorld(seed=0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    rng = np.random.default_rng(1)
    history: dict[str, list[float]] = {t: [] for t in model.loss_terms}
    model.train()
    for step in range(STEPS):
        loss, out = model(world.batch(rng, BATCH))
        opt.zero_grad()
        loss.backward()
        opt.step()
        for t in history:
            history[t].append(float(out[f"loss/{t}"]))
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
    assert int(model.train_step) == STEPS

    first = {t: np.mean(v[:WINDOW]) for t, v in history.items()}
    last = {t: np.mean(v[-WINDOW:]) for t, v in history.items()}
    for t in history:
        print(f"{t}: {first[t]:.4f} -> {last[t]:.4f}")
    rising = [t for t in history if not last[t] < first[t]]
    assert not rising, f"loss terms that did not fall: {rising}"

    model.eval()
    held_out = world.batch(np.random.default_rng(99), 4000)
    with torch.no_grad():
        _, out = model(held_out)
    auc_ctr = roc_auc_score(held_out.click.numpy(), out["pctr"].numpy())
    auc_student = roc_auc_score(held_out.click.numpy(), out["s_c"].numpy())
    auc_ctcvr = roc_auc_score(held_out.conversion.numpy(), out["pctcvr"].numpy())
    print(
        f"held-out AUC: teacher ctr {auc_ctr:.3f}, ctcvr {auc_ctcvr:.3f}; student {auc_student:.3f}"
    )
    assert auc_ctr > 0.6
    assert auc_student > 0.6
