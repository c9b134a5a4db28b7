"""train.select_best_on: periodic validation keeps the checkpoint of the best step, eval and
export load it, and the config refuses a selection without periodic validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support import CONFIG, run_ranks, tiny_config, tiny_overrides

from dmmp_rec.config import ConfigError
from dmmp_rec.distributed.checkpoint import list_checkpoints
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.runtime import checkpoint_dir, load_for_inference
from dmmp_rec.train.trainer import validate

pytestmark = pytest.mark.slow
METRIC = "val/teacher_ctr_auc"


def test_the_best_validated_step_is_kept_and_loaded(tiny_world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    extra = [
        "train.max_steps=40",
        "train.eval_every=8",
        "train.eval_batches=6",
        "train.checkpoint_every=100",
        "train.keep_checkpoints=1",
        f"train.select_best_on={METRIC}",
        "train.dense_lr=0.02",  # fast enough that validation moves between the 5 points
    ]
    run_ranks(1, ["train", "--config", str(CONFIG), *tiny_overrides(tiny_world, run, *extra)])
    best = json.loads((run / "best.json").read_text())
    history = best["history"]
    assert [h["step"] for h in history] == [8, 16, 24, 32, 40]
    values = [h["value"] for h in history]
    assert all(math.isfinite(v) for v in values) and len(set(values)) > 1
    top = max(history, key=lambda h: h["value"])
    assert (best["step"], best["value"]) == (top["step"], top["value"])
    assert best["metric"] == METRIC
    # keep_checkpoints=1 keeps the newest; the best is protected beside it
    steps = {c.step for c in list_checkpoints(run / "checkpoints")}
    assert steps == {40, top["step"]}
    assert checkpoint_dir(run).name == f"step-{top['step']:08d}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["step"] == top["step"]

    # the kept checkpoint validates to the recorded value
    cfg = tiny_config(tiny_world, run, *extra)
    env = init_distributed("cpu")
    try:
        dmp = load_for_inference(cfg, env, run)
        assert validate(cfg, dmp, env)[METRIC] == pytest.approx(top["value"], abs=1e-6)
    finally:
        shutdown()


def test_selection_needs_periodic_validation_and_a_known_metric(
    tiny_world: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="train.select_best_on.*eval_every"):
        tiny_config(tiny_world, tmp_path, f"train.select_best_on={METRIC}", "train.eval_every=0")
    with pytest.raises(ConfigError, match="train.select_best_on.*eval_batches"):
        tiny_config(tiny_world, tmp_path, "train.eval_batches=0")
    with pytest.raises(ConfigError, match="unknown metric 'val/loss'"):
        tiny_config(tiny_world, tmp_path, "train.select_best_on=val/loss", "train.eval_every=5")


def test_training_length_in_passes_over_the_data(tiny_world: Path, tmp_path: Path) -> None:
    from dmmp_rec.data.loader import loader_for_split
    from dmmp_rec.train.trainer import total_steps

    cfg = tiny_config(tiny_world, tmp_path, "train.max_steps=1000", "train.max_epochs=0.5")
    one = loader_for_split(cfg, "train").num_batches_per_epoch
    two = loader_for_split(cfg, "train", rank=0, world_size=2).num_batches_per_epoch
    assert total_steps(cfg, one) == math.ceil(0.5 * one) < 1000
    assert total_steps(cfg, two) == math.ceil(0.5 * two)  # 2 ranks: half the steps per rank
    assert abs(total_steps(cfg, one) - 2 * total_steps(cfg, two)) <= 2
    capped = tiny_config(tiny_world, tmp_path, "train.max_steps=7", "train.max_epochs=3")
    assert total_steps(capped, one) == 7
    plain = tiny_config(tiny_world, tmp_path, "train.max_steps=7")
    assert total_steps(plain, one) == 7
    with pytest.raises(ConfigError, match="train.max_epochs"):
        tiny_config(tiny_world, tmp_path, "train.max_epochs=0")
