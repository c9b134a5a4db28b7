"""The one torchrun command builder (dmmp_rec/distributed/launch.py): its argv, its bad input,
and a real 2-rank job started with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dmmp_rec.distributed.launch import CLI_MODULE, torchrun_command

WORKER = """
import json, os, sys
rank = int(os.environ["RANK"])
out = sys.argv[1]
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"world": int(os.environ["WORLD_SIZE"]), "args": sys.argv[2:]}, f)
"""


def test_a_cli_command_on_three_ranks() -> None:
    argv = torchrun_command(3, [*CLI_MODULE, "eval", "--quiet"], max_restarts=2, python="py")
    assert argv == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
        "--max_restarts", "2", "-m", "dmmp_rec.cli", "eval", "--quiet",
    ]  # fmt: skip


def test_a_script_runs_under_this_interpreter_without_restarts() -> None:
    argv = torchrun_command(1, ["benchmarks/train_worker.py", "--steps", "3"])
    assert argv[0] == sys.executable
    assert argv[argv.index("--max_restarts") + 1] == "0"
    assert argv[-3:] == ["benchmarks/train_worker.py", "--steps", "3"]


@pytest.mark.parametrize(
    ("nproc", "argv", "restarts", "message"),
    [
        (0, ["w.py"], 0, "at least 1 process, got nproc=0"),
        (2, ["w.py"], -1, "max_restarts must be >= 0, got -1"),
        (2, [], 0, "empty argv"),
    ],
)
def test_bad_arguments_are_named(nproc: int, argv: list[str], restarts: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        torchrun_command(nproc, argv, restarts)


def test_the_command_starts_two_ranks(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = torchrun_command(2, [str(script), str(tmp_path), "--flag", "x"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "WARNING"}
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, env=env)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks == [{"world": 2, "args": ["--flag", "x"]}] * 2
