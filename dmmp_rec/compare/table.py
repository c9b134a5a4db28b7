"""reports/comparison.md: the command, one table of every model and metric with the Bayes
ceiling and the reference rankers, the targets with pass/miss, and the notes behind them."""

from __future__ import annotations

import math
from typing import Any

from dmmp_rec.compare.columns import COLUMNS, HEADERS

PEER_NOTES = (
    "torch-rechub 0.9.0 peers: trained by its own `MTLTrainer` / `MatchTrainer` "
    "(`train_one_epoch`) on the same Parquet rows, in the same order, with the same steps, "
    "batch, seed, Adam learning rate and MLP widths; one embedding width for every feature "
    "(the mean of ours, {dim}), because its `EmbeddingLayer` concatenates per-feature "
    "embeddings along one axis. Multi-valued features are padded sequences with its "
    "`SequenceFeature` pooling (mean, as ours). ESMM has no shared bottom in torch-rechub (two "
    "towers over the embeddings, CTR + CTCVR loss). MMoE and PLE learn task 2 as CTCVR over all "
    "impressions (its trainer has no per-task row mask); their CVR AUC ranks clicked rows by "
    "pCTCVR / pCTR. DSSM is trained point-wise (BCE of sigmoid(cosine) against clicks, "
    "MatchTrainer mode 0, torch-rechub's default); its towers feed the same encoders, FAISS "
    "index and retrieval metrics as ours."
)


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.4f}"


def _row(label: str, metrics: dict[str, Any]) -> str:
    return "| " + " | ".join([label] + [fmt(metrics.get(c)) for c in COLUMNS]) + " |"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def comparison_markdown(result: dict[str, Any]) -> str:
    """The whole report from the result dict that `run_comparison` returns."""
    lines = [
        "# Comparison: DMMP, its baselines and the torch-rechub peers",
        "",
        "Reproduce with:",
        "",
        "```",
        result["command"],
        "```",
        "",
        result["setup"],
        "",
        "| model | " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for model in result["models"].values():
        lines.append(_row(model["label"], model["metrics"]))
    lines.append(_row("**Bayes ceiling** (true probabilities as scores)", result["bayes"]))
    for ref in result["references"].values():
        lines.append(_row(f"*reference:* {ref['label']}", ref["metrics"]))
    lines += ["", "Blank: not applicable to that model.", "", "## Targets", ""]
    lines += ["| target | measured (held-out) | verdict |", "| --- | --- | --- |"]
    for t in result["targets"]:
        verdict = {True: "pass", False: "**MISS**", None: "not measured"}[t["passed"]]
        lines.append(f"| {_escape(t['target'])} | {_escape(t['measured'])} | {verdict} |")
    lines += ["", "## Notes", ""]
    lines += [f"- {_escape(note)}" for note in result["notes"]]
    lines += ["", "## Training time per model", ""]
    lines += ["| model | steps | samples | seconds (train) | seconds (eval) |"]
    lines += ["| --- | ---: | ---: | ---: | ---: |"]
    for model in result["models"].values():
        tr = model["train"]
        lines.append(
            f"| {model['label']} | {tr.get('steps', '')} | {tr.get('samples_trained', '')} | "
            f"{tr.get('seconds', '')} | {model.get('eval_seconds', '')} |"
        )
    lines.append("")
    return "\n".join(lines)
