"""Bad input to any command: one `DmmpError`, one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import CONFIG, REPO

from dmmp_rec.cli import main
from dmmp_rec.errors import EXIT_USER_ERROR, DmmpError


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_every_project_error_is_a_dmmp_error() -> None:
    from dmmp_rec.config import ConfigError
    from dmmp_rec.data.aliccp.parse import MalformedRowError
    from dmmp_rec.data.id_policy import OutOfRangeIdError
    from dmmp_rec.data.loader import DataError
    from dmmp_rec.distributed.checkpoint import CheckpointError
    from dmmp_rec.distributed.plan_config import PlanError
    from dmmp_rec.serving.requests import RequestError
    from dmmp_rec.serving.weights import ExportError

    for cls in (ConfigError, MalformedRowError, OutOfRangeIdError, DataError, CheckpointError):
        assert issubclass(cls, DmmpError), cls
    for cls in (PlanError, RequestError, ExportError):
        assert issubclass(cls, DmmpError), cls


def test_bad_config_value_exits_2_with_one_line(capsys) -> None:  # noqa: ANN001
    code = main(["train", "--config", str(CONFIG), "train.max_steps=many"])
    assert code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert line.startswith("dmmp-rec train: ") and "train.max_steps" in line


def test_export_without_a_run_exits_2_with_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["export", "--checkpoint", str(tmp_path / "no_run")])
    assert code == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("dmmp-rec export: ") and "no config.json in the run directory" in line


def test_bad_option_in_a_subprocess_exits_2_on_stderr(tmp_path: Path) -> None:
    """Through the real entry point: the stream and the exit code a shell script sees."""
    argv = ["eval", "--config", str(CONFIG), "--checkpoint", str(tmp_path), "--k", "10,x"]
    proc = subprocess.run(
        [sys.executable, "-m", "dmmp_rec.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    line = _one_error_line(proc.stderr)
    assert line == "dmmp-rec eval: --k wants comma-separated integers, got '10,x'"
