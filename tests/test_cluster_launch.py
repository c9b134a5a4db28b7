"""The cluster launches render: `torchx run --dryrun -s kubernetes | slurm` of
launchers/dmmp.py:train for 2 hosts x 8 GPUs, through torchx's own runner (no cluster needed).

The commands are the ones docs/launch.md shows; the tests read what each scheduler would be
given: roles and replicas, resources, the rendezvous, the NCCL settings and torchrun's
--max_restarts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from torchx.runner import get_runner
from torchx.specs import AppDef

from launchers.dmmp import NCCL_ENV, ROLE

REPO = Path(__file__).resolve().parents[1]
COMPONENT = str(REPO / "launchers" / "dmmp.py") + ":train"
OVERRIDES = ["sharding.plan=plans/gpu_2x8.json", "train.out=/shared/runs/dmmp"]
TWO_BY_EIGHT = [
    "--nnodes", "2", "--nproc_per_node", "8", "--gpu", "8", "--cpu", "64", "--memMB", "500000",
    "--config", "configs/production.yaml", "--max_restarts", "3",
]  # fmt: skip
TORCHRUN = (
    "torchrun --max_restarts 3 --rdzv_backend c10d --rdzv_endpoint {endpoint}:29500 "
    "--rdzv_id '{app_id}' --nnodes 2 --nproc_per_node 8 --tee 3 --role '' -m dmmp_rec.cli "
    "train --config configs/production.yaml " + " ".join(OVERRIDES)
)


def _dryrun(scheduler: str, cfg: dict[str, str], *extra: str):
    with get_runner() as runner:
        return runner.dryrun_component(
            COMPONENT, [*TWO_BY_EIGHT, *extra, "--", *OVERRIDES], scheduler, cfg=cfg
        )


def _check_appdef(app: AppDef) -> None:
    (role,) = app.roles
    assert app.name == "train" and role.name == ROLE
    assert role.num_replicas == 2 and role.min_replicas == 2
    assert (role.resource.gpu, role.resource.cpu, role.resource.memMB) == (8, 64, 500000)
    assert role.port_map == {"c10d": 29500}
    for key, value in NCCL_ENV.items():
        assert role.env[key] == value


def test_kubernetes_dryrun_for_2_hosts_x_8_gpus() -> None:
    volume = "type=volume,src=dmmp-data,dst=/mnt/data"
    k8s = {"queue": "default", "namespace": "recsys"}
    info = _dryrun("kubernetes", k8s, "--image", "r/d:1", "--mounts", volume)
    _check_appdef(info._app)
    job = yaml.safe_load(str(info))  # the Volcano job torchx would create
    assert job["kind"] == "Job" and job["spec"]["queue"] == "default"
    tasks = job["spec"]["tasks"]
    assert [t["name"] for t in tasks] == ["trainer-0", "trainer-1"]
    app_id = job["metadata"]["name"]
    for i, task in enumerate(tasks):
        assert task["replicas"] == 1
        (container,) = task["template"]["spec"]["containers"]
        assert container["image"] == "r/d:1"
        limits = container["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "8" and limits["cpu"] == "64000m"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert {k: env[k] for k in NCCL_ENV} == NCCL_ENV
        # host 0 is the rendezvous (its own name: localhost); host 1 finds it through Volcano
        endpoint = (
            "${TORCHX_RANK0_HOST:=localhost}" if i == 0 else "${VC_TRAINER_0_HOSTS:=localhost}"
        )
        assert container["command"] == [
            "bash",
            "-c",
            TORCHRUN.format(endpoint=endpoint, app_id=app_id),
        ]
        assert container["ports"] == [{"containerPort": 29500, "name": "c10d"}]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/mnt/data"] == "mount-0" and "/dev/shm" in mounts  # data, NCCL's shm
        volumes = {v["name"]: v for v in task["template"]["spec"]["volumes"]}
        assert volumes["mount-0"]["persistentVolumeClaim"]["claimName"] == "dmmp-data"


def test_slurm_dryrun_for_2_hosts_x_8_gpus() -> None:
    info = _dryrun("slurm", {"partition": "gpu", "time": "08:00:00"})
    _check_appdef(info._app)
    request = info.request
    assert request.cmd == ["sbatch", "--parsable"]
    assert list(request.replicas) == ["trainer-0", "trainer-1"]  # one het-job group per host
    for replica in request.replicas.values():
        opts = replica.sbatch_opts
        assert (opts["gpus-per-task"], opts["ntasks-per-node"]) == ("8", "1")
        assert (opts["cpus-per-task"], opts["mem"], opts["partition"]) == ("64", "500000", "gpu")
        assert {k: replica.env[k] for k in NCCL_ENV} == NCCL_ENV
        endpoint = "${SLURM_JOB_NODELIST_HET_GROUP_0:=localhost}"
        assert replica.args == ["-c", TORCHRUN.format(endpoint=endpoint, app_id="${app_id}")]
    script = request.materialize()
    assert "#SBATCH hetjob" in script and "--max_restarts 3" in script


def test_job_env_overrides_the_nccl_defaults_and_cpu_jobs_get_none() -> None:
    info = _dryrun("slurm", {"partition": "gpu"}, "--env", "NCCL_DEBUG=INFO,NCCL_SOCKET_IFNAME=ib0")
    env = info._app.roles[0].env
    assert env["NCCL_DEBUG"] == "INFO" and env["NCCL_SOCKET_IFNAME"] == "ib0"
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    with get_runner() as runner:
        cpu = runner.dryrun_component(COMPONENT, ["--nproc_per_node", "2"], "local_cwd")
    (role,) = cpu._app.roles
    assert not set(NCCL_ENV) & set(role.env)
    assert "--config configs/synthetic.yaml" in role.args[-1]  # the default config


def test_bad_gpu_launches_are_refused() -> None:
    with get_runner() as runner:
        with pytest.raises(ValueError, match="16 workers per host but 8 GPUs"):
            runner.dryrun_component(
                COMPONENT, ["--gpu", "8", "--nproc_per_node", "16"], "local_cwd"
            )
        with pytest.raises(ValueError, match="--config is given twice"):
            runner.dryrun_component(
                COMPONENT, ["--config", "a.yaml", "--", "--config", "b.yaml"], "local_cwd"
            )
