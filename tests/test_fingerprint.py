"""scripts/fingerprint.py diff: a changed figure is caught, timings and run paths are not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO


def _write_run(root: Path, auc: float, seconds: float, cost: str) -> None:
    (root / "run").mkdir(parents=True)
    report = {"teacher": {"ctr_auc": auc}, "timings_s": {"eval": seconds}, "checkpoint": str(root)}
    (root / "run" / "eval_val.json").write_text(json.dumps(report))
    (root / "retrieve.jsonl").write_text(
        '{"user": 1, "items": [3, 4]}\n{"user": 2, "items": [5]}\n'
    )
    (root / "comparison.md").write_text(f"see {root}/run\n| DMMP | 7 | 40 | 5120 | {cost} |\n")


def _diff(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "scripts/fingerprint.py", "diff", str(a), str(b)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_runs_that_differ_only_in_time_and_place_are_equal(tmp_path: Path) -> None:
    _write_run(tmp_path / "a", 0.71, 1.5, "0.48 | 2.1")
    _write_run(tmp_path / "bb", 0.71, 9.0, "0.31 | 0.6")
    result = _diff(tmp_path / "a", tmp_path / "bb")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 files compared, 0 differences" in result.stdout


def test_a_changed_figure_or_missing_file_is_named(tmp_path: Path) -> None:
    _write_run(tmp_path / "a", 0.71, 1.5, "0.48 | 2.1")
    _write_run(tmp_path / "b", 0.7100001, 1.5, "0.48 | 2.1")
    (tmp_path / "b" / "retrieve.jsonl").unlink()
    result = _diff(tmp_path / "a", tmp_path / "b")
    assert result.returncode == 1
    assert "run/eval_val.json/teacher/ctr_auc: 0.71 != 0.7100001" in result.stdout
    assert f"retrieve.jsonl: only in {tmp_path / 'a'}" in result.stdout
    assert "3 files compared, 2 differences" in result.stdout
