"""The last lines of `make demo`, read back from the files the stages wrote."""

from __future__ import annotations

import json
from pathlib import Path

from dmmp_rec.commands.demo_summary import summary_lines


def _write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_summary_names_the_files_and_quotes_the_figures(tmp_path) -> None:
    run = tmp_path / "run"
    step = "run/checkpoints/step-00003000"
    _write(
        run / "summary.json",
        {"checkpoint": step, "steps": 3000, "world_size": 2, "samples_per_s": 25900.4},
    )
    by_k = {"10": 0.1, "50": 0.5, "100": 0.9}
    report = _write(
        run / "eval_report.json",
        {
            "teacher": {
                t: {"auc": a} for t, a in (("ctr", 0.7431), ("cvr", 0.6421), ("ctcvr", 0.7))
            },
            "bayes": {t: {"auc": 0.8} for t in ("ctr", "cvr", "ctcvr")},
            "retrieval": {
                "k": [10, 50, 100],
                "users": 19386,
                "oracle_sample_users": 2000,
                "mean_gate": [0.71, 0.29],
                "sample": {
                    "exp_conversions_ratio": {**by_k, "50": 0.1988},
                    "exp_clicks_ratio": {**by_k, "50": 0.4601},
                    "bait_share": {**by_k, "50": 0.3521},
                },
                "all_users": {
                    "recall_click": {**by_k, "50": 0.0704},
                    "recall_conversion": {**by_k, "50": None},
                },
            },
        },
    )
    _write(run / "export" / "manifest.json", {"num_items": 50000})
    lines = summary_lines(run, report, run / "export", [("training", 127.4), ("export", 8.0)])
    text = "\n".join(lines)
    assert len(lines) <= 10
    assert f"model:  {step} (3000 steps on 2 processes, 25,900 samples/s" in text
    assert f"report: {report}" in text and "50000 item vectors" in text
    assert "CTR 0.743 (0.800), CVR 0.642 (0.800), CTCVR 0.700 (0.800)" in text
    assert (
        "retrieval @50, 2000 test users: expected conversions 0.199 and expected clicks 0.460"
        in text
    )
    assert "click-bait share 0.352" in text
    assert "click recall 0.070, conversion recall -" in text  # null (NaN) shown as '-'
    assert lines[-1] == "time: training 127 s, export 8 s; total 135 s"


def test_summary_says_what_is_missing(tmp_path) -> None:
    lines = summary_lines(tmp_path, tmp_path / "r.json", tmp_path / "export", [("training", 1.0)])
    text = "\n".join(lines)
    assert "report: none" in text and "export: none" in text
    assert lines[-1] == "time: training 1 s; total 1 s"
