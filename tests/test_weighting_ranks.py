"""Loss weights with statistics (DWA's window means, the scaled form's running scales) are the
same on every rank: they come from rank-averaged losses, not from each rank's own batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import CONFIG, REPO, run_ranks, tiny_overrides

pytestmark = pytest.mark.slow

SCRIPT = str(REPO / "tests" / "scripts" / "weights_across_ranks.py")


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [("dwa", ["model.loss.dwa_window=2"]), ("scaled", ["model.loss.scale_decay=0.5"])],
)
def test_weights_are_equal_on_two_ranks(
    scheme: str, extra: list[str], tiny_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "weights.json"
    overrides = tiny_overrides(
        tiny_world,
        tmp_path / "run",
        f"model.loss.weighting={scheme}",
        "model.loss.distill_warmup_steps=0",
        *extra,
    )
    run_ranks(2, [SCRIPT, str(CONFIG), "7", str(out), *overrides])
    ranks = json.loads(out.read_text())
    assert len(ranks) == 2
    # each rank trained on its own batches: their losses differ ...
    assert ranks[0]["losses"] != ranks[1]["losses"]
    # ... but their weighting statistics and weights are identical
    assert ranks[0]["buffers"] == ranks[1]["buffers"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    if scheme == "dwa":
        assert any(w != 1.0 for w in ranks[0]["weights"].values())  # past two windows
    else:
        assert all(s > 0 for s in ranks[0]["buffers"]["scale"])
