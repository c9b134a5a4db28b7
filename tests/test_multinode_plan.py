"""Multi-node plans: a plan for 2 hosts x 8 GPUs records its shape, and a job of another shape
refuses it before training (its shards name GPUs by their index on a host)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dmmp_rec.cli import main
from dmmp_rec.config import load_config
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.distributed.model_parallel import _plan_locally
from dmmp_rec.distributed.planning.config import PlanError, load_plan_config
from dmmp_rec.distributed.planning.io import load_plan, save_plan
from dmmp_rec.distributed.planning.planner import PlanningModel, make_plan

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ROOT / "configs/production.yaml"
GPU_64 = ROOT / "configs/plans/gpu_64.yaml"


@pytest.fixture(scope="module")
def production():
    return load_config(PRODUCTION)


@pytest.fixture(scope="module")
def plan_2x8(production, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dmmp-rec plan` for 2 hosts x 8 GPUs, as docs/launch.md makes it."""
    out = tmp_path_factory.mktemp("plans") / "gpu_2x8.json"
    argv = ["plan", "--config", str(PRODUCTION), "--plan", str(GPU_64)]
    argv += ["--plan-set", "topology.world_size=16", "--out", str(out)]
    assert main(argv) == 0
    return out


def _tables(cfg) -> dict:
    return {
        "table_names": [s.table_name for s in cfg.features.all],
        "expected_shapes": {s.table_name: (s.cardinality, s.dim) for s in cfg.features.all},
    }


def test_gpu_plan_for_2_hosts_x_8_records_its_shape(plan_2x8: Path, production) -> None:
    meta = json.loads(plan_2x8.read_text())["meta"]
    assert (meta["world_size"], meta["local_world_size"], meta["device"]) == (16, 8, "cuda")
    plan = load_plan(
        plan_2x8, 16, expected_device="cuda", expected_local_world_size=8, **_tables(production)
    )
    placements = {
        str(shard.placement)
        for table in plan.plan["sparse.ebc"].values()
        if table.sharding_spec is not None
        for shard in table.sharding_spec.shards
    }
    # shards name a host's GPU by its local index: rank 9 is the second GPU of the second host
    assert "rank:9/cuda:1" in placements
    assert {p.split("/")[1] for p in placements} == {f"cuda:{i}" for i in range(8)}


def test_job_of_another_shape_refuses_the_2x8_plan(plan_2x8: Path, production) -> None:
    with pytest.raises(PlanError) as err:  # same 16 ranks, but 4 hosts x 4 GPUs
        load_plan(
            plan_2x8, 16, expected_device="cuda", expected_local_world_size=4, **_tables(production)
        )
    message = str(err.value)
    assert str(plan_2x8) in message
    assert "16 ranks as 2 host(s) x 8" in message and "16 ranks as 4 host(s) x 4" in message
    assert "dmmp-rec plan --world-size 16 --local-world-size 4" in message
    with pytest.raises(PlanError, match="world size 16 but the job has 8 ranks"):
        load_plan(plan_2x8, 8, expected_local_world_size=8, **_tables(production))


def test_running_job_checks_its_gpu_shape_before_sharding(plan_2x8: Path, production) -> None:
    """What `train` does on every rank: the job's LOCAL_WORLD_SIZE goes into the check."""
    cfg = load_config(PRODUCTION, [f"sharding.plan={plan_2x8}"])
    model = PlanningModel(cfg)
    good = DistEnv(0, 16, 0, torch.device("cuda", 0), "nccl", local_world_size=8)
    assert "sparse.ebc" in _plan_locally(cfg, model, good).plan
    four_by_four = DistEnv(0, 16, 0, torch.device("cuda", 0), "nccl", local_world_size=4)
    with pytest.raises(PlanError, match="4 host"):
        _plan_locally(cfg, model, four_by_four)


def test_plan_config_for_8_gpus_per_host_refuses_a_4_gpu_host_job(production) -> None:
    plan_cfg = load_plan_config(GPU_64, ["topology.world_size=16"])
    with pytest.raises(PlanError, match="8 ranks per host but the job runs 4 per host"):
        make_plan(production, plan_cfg, 16, "cuda", local_world_size=4)
    # without a fixed ranks-per-host the planner takes the job's
    free = load_plan_config(GPU_64, ["topology.world_size=16", "topology.local_world_size=null"])
    result = make_plan(production, free, 16, "cuda", local_world_size=4)
    assert result.local_world_size == 4 and result.meta["local_world_size"] == 4


def test_saved_bare_plan_keeps_the_local_world_size(tmp_path: Path, production) -> None:
    """The trainer saves dmp.plan with the job's shape (train/trainer.py)."""
    result = make_plan(production, load_plan_config(GPU_64, ["topology.world_size=16"]), 16, "cuda")
    path = save_plan(
        result.plan,
        tmp_path / "p.json",
        {"world_size": 16, "local_world_size": 8, "device": "cuda"},
    )
    assert json.loads(path.read_text())["meta"]["local_world_size"] == 8
    with pytest.raises(PlanError, match="16 ranks as 16 host"):
        load_plan(path, 16, expected_local_world_size=1, **_tables(production))
