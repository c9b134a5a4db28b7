"""torchx components for dmmp-rec jobs.

    torchx run -s local_cwd launchers/dmmp.py:train --nproc_per_node 2 -- \
        --config configs/synthetic.yaml train.max_steps=200

The same component runs on a cluster by changing the scheduler (`-s slurm`, `-s kubernetes`) and
the image; see docs/launch.md. Each component wraps torchx's `dist.ddp` (torchrun under the
hood) and turns elastic restarts on: a worker that dies makes the agent restart all workers,
which resume from the newest complete checkpoint.
"""

from typing import Dict, Optional  # torchx's component linter needs these spellings

import torchx
import torchx.components.dist as dist
import torchx.specs as specs


def _with_restarts(app: specs.AppDef, max_restarts: int) -> specs.AppDef:
    """dist.ddp has no max_restarts argument: add torchrun's flag to its command line."""
    for role in app.roles:
        command = role.args[-1]
        if not command.startswith("torchrun "):
            raise ValueError(f"unexpected dist.ddp command line: {command[:80]}")
        role.args[-1] = command.replace("torchrun ", f"torchrun --max_restarts {max_restarts} ", 1)
    return app


def train(
    *script_args: str,
    config: str = "configs/synthetic.yaml",
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
) -> specs.AppDef:
    """Train DMMP with DistributedModelParallel on nnodes x nproc_per_node workers.

    Args:
        script_args: dotted config overrides, e.g. train.max_steps=200 data.path=/data/w
        config: the YAML config, relative to the job's working directory (or image)
        nnodes: number of hosts
        nproc_per_node: workers per host (one per GPU on GPU hosts)
        max_restarts: elastic restarts of the whole worker group after a failure
        image: the image (local_cwd: the working directory; docker/k8s: a container image)
        h: a registered named resource (overrides cpu, gpu, memMB)
        cpu: cpus per host
        gpu: gpus per host
        memMB: memory per host in MB
        rdzv_port: rendezvous port on the first host (multi-host jobs)
        env: extra environment variables for the workers
    """
    app = dist.ddp(
        "train",
        "--config",
        config,
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
    )
    return _with_restarts(app, max_restarts)
