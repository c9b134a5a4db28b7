"""The torchx component refuses a job that trains on GPUs but requests none (on Kubernetes or
Slurm such a job would get CPU-only workers): `train.device=cuda`, or a sharding plan made for
cuda (a saved plan JSON's meta.device, a plan config's topology.device), given as an override
or in the config file. CPU plans, and plans it cannot read from here, launch as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launchers.dmmp import cuda_reason, train

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = str(REPO / "configs" / "synthetic.yaml")
GPU_64 = str(REPO / "configs" / "plans" / "gpu_64.yaml")
CPU_2 = str(REPO / "configs" / "plans" / "cpu_2.yaml")


def _saved_plan(tmp_path: Path, device: str) -> str:
    path = tmp_path / f"{device}.json"
    path.write_text(json.dumps({"format": "dmmp-rec-sharding-plan", "meta": {"device": device}}))
    return str(path)


def test_cuda_plan_without_gpus_is_refused(tmp_path: Path) -> None:
    plan = _saved_plan(tmp_path, "cuda")
    with pytest.raises(ValueError, match=rf"sharding.plan={plan} is a plan for cuda.*--gpu N"):
        train(f"sharding.plan={plan}", config=SYNTHETIC, nproc_per_node=2)
    with pytest.raises(ValueError, match="plan for cuda"):
        train(f"sharding.plan={GPU_64}", config=SYNTHETIC, nproc_per_node=8)
    with pytest.raises(ValueError, match=r"\(train.device=cuda\) but requests none"):
        train("train.device=cuda", config=SYNTHETIC)
    app = train(f"sharding.plan={plan}", config=SYNTHETIC, nproc_per_node=2, gpu=2)
    assert [role.resource.gpu for role in app.roles] == [2]


def test_the_config_files_plan_counts_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the job's working directory: production.yaml names its plan there
    with pytest.raises(ValueError, match="configs/plans/gpu_64.yaml is a plan for cuda"):
        train("--config", "configs/production.yaml", nproc_per_node=8)
    config = tmp_path / "job.yaml"
    config.write_text("train:\n  device: cuda\n")
    assert cuda_reason([], str(config)) == "train.device=cuda"
    assert cuda_reason(["train.device=cpu"], str(config)) is None  # the override wins


def test_cpu_and_unreadable_plans_launch_as_before(tmp_path: Path) -> None:
    for plan in (_saved_plan(tmp_path, "cpu"), CPU_2, "/cluster/only/plan.json", "null"):
        app = train(f"sharding.plan={plan}", config=SYNTHETIC, nproc_per_node=2)
        assert [role.resource.gpu for role in app.roles] == [0]
    assert cuda_reason([], SYNTHETIC) is None
