"""The one torchrun command line of the project: N local workers of a script or module.

The comparison, the benchmarks, the GPU check and the tests all start local process groups the
same way: this interpreter's `torch.distributed.run` with a standalone rendezvous (a c10d store
on a free port of localhost, so concurrent jobs never collide on a port), N workers per node,
and torchrun's restart budget. Multi-host jobs go through the torchx component
(launchers/dmmp.py) instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# what a worker runs for `dmmp-rec ARGS`: the CLI module of this interpreter's dmmp_rec
CLI_MODULE = ("-m", "dmmp_rec.cli")


def torchrun_command(
    nproc: int,
    argv: Sequence[str],
    max_restarts: int = 0,
    python: str = sys.executable,
) -> list[str]:
    """The argv of a single-host torchrun job, ready for `subprocess.run`.

    Args:
        nproc: worker processes to start (one rank each).
        argv: what every worker runs: a script path and its arguments, or `-m module ...`
            (`[*CLI_MODULE, "train", ...]` for a dmmp-rec command).
        max_restarts: how many times torchrun's agent restarts the whole group after a
            worker fails (0: a failure ends the job).
        python: the interpreter that runs torchrun and its workers.

    Returns:
        `[python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", N,
        "--max_restarts", R, *argv]`.
    """
    if nproc < 1:
        raise ValueError(f"torchrun needs at least 1 process, got nproc={nproc}")
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
    if not argv:
        raise ValueError("torchrun needs a script or `-m module` to run, got an empty argv")
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "--max_restarts",
        str(max_restarts),
        *argv,
    ]
