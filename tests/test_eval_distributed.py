"""`dmmp-rec eval` on 2 gloo ranks gives the numbers of 1 process (a real torchrun)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support import CONFIG, REPO, run_ranks, tiny_overrides

pytestmark = pytest.mark.slow

PLAN = REPO / "configs" / "plans" / "cpu_2.yaml"


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(node, list):
        out = {}
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def test_two_rank_eval_equals_one_process(tiny_world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_world, run, "train.max_steps=20")
    run_ranks(1, ["train", "--config", str(CONFIG), *overrides])
    reports = {}
    for nproc in (1, 2):
        out = tmp_path / f"report{nproc}.json"
        argv = ["eval", "--config", str(CONFIG), "--checkpoint", str(run), "--out", str(out)]
        argv += ["--oracle-users", "300", "--k", "10,100", "--encode-batch", "700", "--quiet"]
        # on 2 ranks the tables are sharded table-wise, column-wise and data-parallel (the
        # checkpoint is resharded on load), so the EBC's all-to-alls run while encoding
        plan = [f"sharding.plan={PLAN}"] if nproc == 2 else []
        result = run_ranks(nproc, [*argv, *overrides, *plan])
        assert "recall_click" in result.stdout
        assert result.stdout.count("Impressions (test)") == 1  # the table is printed once
        reports[nproc] = json.loads(out.read_text())
    one, two = (_flatten({k: v for k, v in reports[n].items() if k != "meta"}) for n in (1, 2))
    assert one.keys() == two.keys() and len(one) > 100
    for key, a in one.items():
        b = two[key]
        if isinstance(a, float) and isinstance(b, float):
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), (key, a, b)
        else:
            assert a == b, (key, a, b)
    assert reports[2]["meta"]["world_size"] == 2
    world = json.loads((tiny_world / "world.json").read_text())
    assert reports[2]["teacher"]["rows"] == world["splits"]["test"]["rows"]  # every row once
    assert reports[2]["retrieval"]["oracle_sample_users"] == 300
    betas = [float(p["beta"]) for p in reports[2]["frontier"]["points"]]
    assert betas[0] == -math.inf and betas[-1] == math.inf and 0.0 in betas
    # a 20-step model is far from the Bayes ceiling
    assert reports[1]["bayes"]["ctr"]["auc"] > reports[1]["teacher"]["ctr"]["auc"]
