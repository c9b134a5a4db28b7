"""What every step of the check shares: the job's settings, commands run from the repository
root with a deadline, and the failure a step reports."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmmp_rec.config.presets import TINY_WORLD

REPO = Path(__file__).resolve().parents[2]  # paths from this file, not the working directory
CONFIG = str(REPO / "configs" / "synthetic.yaml")
SMOKE_WORLD = list(TINY_WORLD)  # --cpu-smoke: the test suite's tiny world


class CheckFailed(RuntimeError):
    """A step's expectation failed; the message says which and with what figures."""


class StepTimeout(CheckFailed):
    """A step ran past its deadline (--step-timeout); its processes were killed."""


@dataclass
class Check:
    out: Path
    gpus: int
    steps: int
    device: str  # "cuda", or "cpu" for --cpu-smoke
    dry_run: bool = False
    overrides: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    step_timeout_s: float = 1800.0
    nan_at_step: int | None = None  # inject a NaN into training (the check's own test)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def every(self) -> int:  # checkpoint interval: the elastic step resumes from step `every`
        return max(1, self.steps // 2)

    @property
    def log_every(self) -> int:  # about 20 logged steps, each of whose losses must be finite
        return max(1, self.steps // 20)

    def job(self, *extra: str) -> list[str]:
        """Config overrides every command of the check shares."""
        return [*self.overrides, f"data.path={self.world}", f"train.device={self.device}", *extra]

    def run(self, name: str, argv: list[str]) -> str:
        """Run a command from the repository root, its output in OUT/logs/NAME.log. Its whole
        process group is killed when the step's deadline passes (torchrun's workers too)."""
        self.commands.append(shlex.join(argv))
        if self.dry_run:
            return ""
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate()
        except BaseException:  # the deadline (StepTimeout) or ^C: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.write_text(f"$ {shlex.join(argv)}\n(killed: past the step's deadline)\n")
            raise
        log.write_text(f"$ {shlex.join(argv)}\n{stdout}\n{stderr}")
        if proc.returncode != 0:
            tail = (stdout + stderr)[-1500:]
            raise CheckFailed(f"exit status {proc.returncode} (log {log}):\n{tail}")
        return stdout


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in this (main) thread once `seconds` have passed."""

    def expire(_signum: int, _frame: object) -> None:
        raise StepTimeout(f"timed out after {seconds:g} s (--step-timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmmp_rec.cli", *args]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
