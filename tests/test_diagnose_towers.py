"""scripts/diagnose_towers.py on a trained tiny run: every scorer reported, ratios in range."""

from __future__ import annotations

import re
import subprocess
import sys

from support import REPO
from test_export import Exported, exported  # noqa: F401  (the session fixture)

SCORERS = [
    "click tower s_c",
    "conversion tower s_v",
    "fused, learned gate",
    "fused, fixed gate 0.50 click",
    "teacher pCTCVR",
    "teacher pCTR",
    "true pCTR",
]


def test_diagnosis_reports_every_scorer(exported: Exported) -> None:  # noqa: F811
    proc = subprocess.run(
        [sys.executable, "scripts/diagnose_towers.py", str(exported.run), "--users", "12"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = dict(
        re.findall(r"^\s*(.+?): expected conversions@50 / oracle ([0-9.]+)", proc.stdout, re.M)
    )
    assert set(SCORERS) <= set(found), proc.stdout
    assert all(0.0 < float(v) <= 1.0 + 1e-9 for v in found.values()), found
    # the true-pCTR ranking is the oracle of clicks: no learned scorer sees more expected clicks
    clicks = dict(re.findall(r"^\s*(.+?): .*, clicks ([0-9.]+)$", proc.stdout, re.M))
    assert all(float(clicks["true pCTR"]) >= float(c) - 1e-6 for c in clicks.values()), clicks
    assert "12 users x" in proc.stdout
