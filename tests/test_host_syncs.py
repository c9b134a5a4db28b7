"""Issue 17: a training step that does not log makes the CPU wait for the device nowhere.

The whole `train()` runs under tests/sync_counter.py's counter, on one gloo rank here; the
trainer's logger marks where each step begins, so every call is charged to its step.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import tiny_config
from sync_counter import SyncCounter, SyncLog
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.distributed.env import DistEnv, init_distributed, shutdown
from dmmp_rec.model.losses import in_batch_softmax
from dmmp_rec.model.weighting import FixedWeighting
from dmmp_rec.model.weighting_base import DistillWarmup
from dmmp_rec.train import trainer
from dmmp_rec.train.logger import TrainLogger

STEPS, LOG_EVERY = 9, 4


@pytest.fixture
def one_rank() -> Iterator[DistEnv]:
    env = init_distributed("cpu")
    yield env
    shutdown()


def _train_counting(
    world: Path, out: Path, env: DistEnv, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> SyncLog:
    log = SyncLog()

    class StepMarkingLogger(TrainLogger):
        def __init__(self, out: Path, total: int, start: int, batch: int, on: bool) -> None:
            super().__init__(out, total, start, batch, on)
            log.begin(start + 1)

        def step(self, step: int, scalars: dict[str, float], log_now: bool) -> None:
            super().step(step, scalars, log_now)
            log.begin(step + 1)

    monkeypatch.setattr(trainer, "TrainLogger", StepMarkingLogger)
    cfg = tiny_config(
        world,
        out,
        f"train.max_steps={STEPS}",
        f"train.log_every={LOG_EVERY}",
        "train.eval_batches=0",
        "train.select_best_on=null",
        "train.checkpoint_every=1000",
        *extra,
    )
    with SyncCounter(log):
        trainer.train(cfg, env)
    return log


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("model.loss.weighting=fixed", "model.student.learn_tau=false"),
        ("model.variant=two_tower", "model.student.learn_tau=false"),
        (
            "model.loss.weighting=dwa",
            "model.loss.dwa_window=2",
            "model.student.in_batch_negatives=false",
        ),
    ],
    ids=["dmmp", "fixed-weights-fixed-tau", "two-tower", "dwa-no-inbatch"],
)
def test_no_host_sync_outside_logging_steps(
    tiny_world: Path,
    tmp_path: Path,
    one_rank: DistEnv,
    monkeypatch: pytest.MonkeyPatch,
    extra: tuple[str, ...],
) -> None:
    log = _train_counting(tiny_world, tmp_path / "run", one_rank, monkeypatch, *extra)
    logging = {s for s in range(1, STEPS + 1) if s % LOG_EVERY == 0 or s == STEPS}
    # step 1 starts the pipeline: torchrec validates the first batch and builds its input
    # distribution once; none of that is dmmp-rec's
    first = [c.where for c in log.ours(1) if "dmmp_rec/" in c.site[0]]
    assert not first, first
    quiet = [s for s in range(2, STEPS + 1) if s not in logging]
    found = {s: log.ours(s) for s in quiet if log.ours(s)}
    assert not found, "host syncs in steps that do not log:\n" + "\n".join(
        f"step {s}: {n}x {c.name} at {c.where}"
        for s, calls in found.items()
        for c, n in calls.items()
    )
    for s in logging:  # the counter sees the logging step's reads of the loss
        assert any(c.name in {"__float__", "item"} for c in log.ours(s)), s
    assert all(log.calls.get(s) for s in quiet), "every step runs torchrec's input dist"


def _in_batch_softmax_before(u, items, tau, item_ids, positive):  # type: ignore[no-untyped-def]
    """losses.in_batch_softmax as it was at 4ab1f98: the rows found by positive.nonzero()."""
    rows = positive.nonzero().squeeze(1)
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    log_q = torch.log(same.sum(0).to(u.dtype) / item_ids.shape[0])
    logits = torch.addmm(-log_q.unsqueeze(0), u[rows] / tau, items.T)
    mask = same[rows]
    mask[torch.arange(rows.shape[0]), rows] = False
    logits = logits.masked_fill(mask, float("-inf"))
    ce = F.cross_entropy(logits, rows, reduction="sum")
    return ce / positive.sum().to(ce.dtype).clamp(min=1.0)


@pytest.mark.parametrize("rate", [0.3, 0.0, 1.0])
@pytest.mark.parametrize("host_rows", [True, False], ids=["host-rows", "all-rows"])
def test_sync_free_in_batch_softmax_equals_the_nonzero_form(rate: float, host_rows: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    u0 = F.normalize(torch.randn(96, 8, generator=gen), dim=-1)
    i0 = F.normalize(torch.randn(96, 8, generator=gen), dim=-1)
    item_ids = torch.randint(0, 25, (96,), generator=gen)  # many duplicates
    positive = torch.rand(96, generator=gen) < rate
    rows = torch.from_numpy(np.flatnonzero(positive.numpy())) if host_rows else None
    tau = torch.tensor(0.1)
    results = []
    for fn in (_in_batch_softmax_before, partial(in_batch_softmax, rows=rows)):
        u, items = u0.clone().requires_grad_(), i0.clone().requires_grad_()
        loss = fn(u, items, tau, item_ids, positive)
        loss.backward()
        results.append((loss.detach(), u.grad, items.grad))
    for now, before in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(now, before, rtol=1e-6, atol=1e-6)
    assert (results[0][0].item() > 0.5) == (rate > 0)


def test_loader_batches_carry_host_lengths_and_clicked_rows(
    tiny_world: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(tiny_world, tmp_path)
    batch = next(iter(loader_for_split(cfg, "train")))
    kjt = batch.features
    counted = KeyedJaggedTensor(keys=kjt.keys(), values=kjt.values(), lengths=kjt.lengths())
    assert kjt._length_per_key is not None and kjt._offset_per_key is not None  # given, not counted
    assert kjt.length_per_key() == counted.length_per_key()
    assert kjt.offset_per_key() == counted.offset_per_key()
    assert kjt.stride() == counted.stride() == cfg.data.batch_size
    assert batch.clicked_rows is not None
    np.testing.assert_array_equal(batch.clicked_rows, np.flatnonzero(batch.click.numpy() > 0))
    moved = batch.to(torch.device("cpu"))
    assert moved.features._length_per_key == kjt.length_per_key()
    assert moved.clicked_rows is not None and torch.equal(moved.clicked_rows, batch.clicked_rows)


def test_weighting_and_tau_constants_are_buffers_outside_checkpoints() -> None:
    terms = ("teacher/ctr", "distill/ctr")
    fixed = FixedWeighting(terms, DistillWarmup(0.0, 3, 0), {"teacher/ctr": 2.0})
    assert fixed.is_distill.tolist() == [False, True]
    assert fixed.fixed_weights.tolist() == [2.0, 1.0]
    assert set(fixed.state_dict()) == set()  # checkpoints keep the keys they had
    losses = {"teacher/ctr": torch.tensor(0.5), "distill/ctr": torch.tensor(0.25)}
    early, late = fixed(losses, torch.tensor(0)), fixed(losses, torch.tensor(5))
    assert early.objective.item() == 1.0 and late.objective.item() == 1.25
    with torch.device("meta"):
        lazy = FixedWeighting(terms, DistillWarmup(), {"teacher/ctr": 2.0})
    lazy.to_empty(device="cpu")
    lazy.reset_parameters()  # what DistributedModelParallel does to a meta-built module
    assert lazy.fixed_weights.tolist() == [2.0, 1.0] and lazy.is_distill.tolist() == [False, True]


def test_the_counter_sees_torchrec_count_lengths_a_kjt_did_not_carry(
    tiny_world: Path, tmp_path: Path
) -> None:
    """What the loader's host-side lengths spare: a KJT built without them has torchrec
    `.tolist()` its lengths when a key is looked up (a device sync on a GPU)."""
    batch = next(iter(loader_for_split(tiny_config(tiny_world, tmp_path), "train")))
    given = batch.features
    bare = KeyedJaggedTensor(keys=given.keys(), values=given.values(), lengths=given.lengths())
    seen = []
    for kjt in (given, bare):
        log = SyncLog()
        with SyncCounter(log):
            ids = kjt["item_id"].values()
        seen.append(sorted((c.name, c.site[0].split("/")[-1]) for c in log.ours(0)))
        assert torch.equal(ids, given["item_id"].values())
    assert seen[0] == []
    assert ("tolist", "jagged_tensor.py") in seen[1]
