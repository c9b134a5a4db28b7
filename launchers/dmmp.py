"""torchx components for dmmp-rec jobs.

    torchx run -s local_cwd launchers/dmmp.py:train --nproc_per_node 2 \
        --config configs/synthetic.yaml -- train.max_steps=200

The same component runs on a cluster by changing the scheduler (`-s slurm`, `-s kubernetes`) and
the image; see docs/launch.md. Each component wraps torchx's `dist.ddp` (torchrun under the
hood) and turns elastic restarts on: a worker that dies makes the agent restart all workers,
which resume from the newest complete checkpoint.
"""

from pathlib import Path
from typing import Dict, List, Optional  # torchx's component linter needs these spellings

import torchx
import torchx.components.dist as dist
import torchx.specs as specs
import yaml

ROLE = "trainer"
DEFAULT_CONFIG = "configs/synthetic.yaml"

# NCCL settings of jobs on GPU hosts (the job's `env` overrides them):
# - TORCH_NCCL_ASYNC_ERROR_HANDLING=1: a failed or timed-out collective (train.dist_timeout_s)
#   aborts the worker instead of leaving it hung, so torchrun's elastic agent restarts the
#   whole group, which resumes from the newest checkpoint;
# - NCCL_DEBUG=WARN: NCCL's own warnings (a fallback transport, a bad interface) in the logs.
NCCL_ENV = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN"}


def _finish(app: specs.AppDef, max_restarts: int) -> specs.AppDef:
    """What dist.ddp lacks: torchrun's --max_restarts, our role name, NCCL_ENV on GPU hosts."""
    for role in app.roles:
        command = role.args[-1]
        if not command.startswith("torchrun "):
            raise ValueError(f"unexpected dist.ddp command line: {command[:80]}")
        role.args[-1] = command.replace("torchrun ", f"torchrun --max_restarts {max_restarts} ", 1)
        role.name = ROLE
        if role.resource.gpu > 0:
            for key, value in NCCL_ENV.items():
                role.env.setdefault(key, value)
    return app


def _override(script_args: List[str], key: str) -> Optional[str]:
    """The value of the last `key=value` among the job's config overrides."""
    values = [a.split("=", 1)[1] for a in script_args if a.startswith(f"{key}=")]
    return values[-1] if values else None


def _read(path: str) -> Dict:
    """A JSON or YAML file as a dict; {} when it cannot be read here (it may exist only in the
    job's image or on the cluster's shared disk)."""
    try:
        data = yaml.safe_load(Path(path).read_text())  # YAML reads JSON too
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def cuda_reason(script_args: List[str], config: str) -> Optional[str]:
    """Why the job trains on CUDA (train.device=cuda, or a sharding plan made for cuda: a
    saved plan JSON's meta.device or a plan config's topology.device), None when it need not.
    Overrides win over the config file; files that cannot be read here are not guessed at."""
    job = _read(config)
    device = _override(script_args, "train.device") or (job.get("train") or {}).get("device")
    if device == "cuda":
        return "train.device=cuda"
    plan = _override(script_args, "sharding.plan") or (job.get("sharding") or {}).get("plan")
    if not plan or plan == "null":
        return None
    saved = _read(plan)
    plan_device = (saved.get("meta") or {}).get("device") or (saved.get("topology") or {}).get(
        "device"
    )
    return f"sharding.plan={plan} is a plan for cuda" if plan_device == "cuda" else None


def train(
    *script_args: str,
    config: Optional[str] = None,
    nnodes: int = 1,
    nproc_per_node: int = 2,
    max_restarts: int = 3,
    image: str = torchx.IMAGE,
    h: Optional[str] = None,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    rdzv_port: int = 29500,
    env: Optional[Dict[str, str]] = None,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Train DMMP with DistributedModelParallel on nnodes x nproc_per_node workers.

    Args:
        script_args: dotted config overrides, e.g. train.max_steps=200 data.path=/data/w
        config: the YAML config, relative to the job's working directory (or image); default
            configs/synthetic.yaml. `--config F` after `--` is accepted too (not both)
        nnodes: number of hosts
        nproc_per_node: workers per host (one per GPU on GPU hosts)
        max_restarts: elastic restarts of the whole worker group after a failure
        image: the image (local_cwd: the working directory; docker/k8s: a container image)
        h: a registered named resource (overrides cpu, gpu, memMB)
        cpu: cpus per host
        gpu: gpus per host
        memMB: memory per host in MB
        rdzv_port: rendezvous port on the first host (multi-host jobs)
        env: extra environment variables for the workers (on GPU hosts they override NCCL_ENV)
        mounts: volumes for the workers, e.g. type=bind,src=/shared,dst=/shared (see torchx)
    """
    if gpu > 0 and nproc_per_node > gpu:
        raise ValueError(f"{nproc_per_node} workers per host but {gpu} GPUs: one worker per GPU")
    if "--config" in script_args:
        if config is not None:
            raise ValueError("--config is given twice: as a component argument and after `--`")
        config_args: List[str] = []
        at = script_args.index("--config")
        job_config = script_args[at + 1] if at + 1 < len(script_args) else DEFAULT_CONFIG
    else:
        config_args = ["--config", config or DEFAULT_CONFIG]
        job_config = config or DEFAULT_CONFIG
    app = dist.ddp(
        "train",
        *config_args,
        *script_args,
        m="dmmp_rec.cli",
        image=image,
        name="dmmp/train",
        h=h,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        j=f"{nnodes}x{nproc_per_node}",
        env=env,
        rdzv_port=rdzv_port,
        mounts=mounts,
    )
    reason = cuda_reason(list(script_args), job_config)
    if reason is not None and any(role.resource.gpu < 1 for role in app.roles):
        raise ValueError(
            f"the job trains on GPUs ({reason}) but requests none: pass --gpu N (GPUs per "
            "host, at least --nproc_per_node) or a GPU resource with -h"
        )
    return _finish(app, max_restarts)
