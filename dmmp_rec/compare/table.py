"""reports/comparison.md: the command, the test-day table (means and 95% intervals over the
seeds), the frontier readings, the operating point chosen on validation, the targets, the
validation-day table, the per-seed numbers and the notes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dmmp_rec.compare.columns import HEADERS, LOGGED
from dmmp_rec.compare.findings import Analysis
from dmmp_rec.compare.records import Comparison
from dmmp_rec.compare.stats import Interval, interval

MAIN_COLUMNS = (
    "ctr_auc",
    "cvr_auc",
    "ctcvr_auc",
    "expected_clicks@50",
    "expected_conversions@50",
    "bait_share@50",
    "ndcg@50",
    "click_recall@50",
    "conversion_recall@50",
)


def fmt(x: float | int | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}f}"


def cell(iv: Interval | None) -> str:
    """mean +- half-width of the 95% interval; the mean alone for one seed."""
    if iv is None or not iv.n:
        return ""
    if not math.isfinite(iv.lo) or not math.isfinite(iv.hi):
        return fmt(iv.mean)
    return f"{fmt(iv.mean)} ± {fmt((iv.hi - iv.lo) / 2, 4)}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _header(columns: tuple[str, ...]) -> list[str]:
    names = [HEADERS[c] + (" *" if c in LOGGED else "") for c in columns]
    return ["| model | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(columns)]


def _split_table(result: Comparison, analysis: Analysis, split: str) -> list[str]:
    summary = analysis.summary.get(split, {})
    lines = _header(MAIN_COLUMNS)
    for name, model in result.models.items():
        ivs = summary.get(name, {})
        if not any(c in ivs and ivs[c].n for c in MAIN_COLUMNS):
            continue
        lines.append(
            f"| {model.label} | " + " | ".join(cell(ivs.get(c)) for c in MAIN_COLUMNS) + " |"
        )
    bayes = result.bayes.get(split)
    if bayes:
        lines.append(
            "| **Bayes ceiling** (true probabilities) | "
            + " | ".join(fmt(bayes.get(c)) for c in MAIN_COLUMNS)
            + " |"
        )
    for ref in result.references.get(split, {}).values():
        lines.append(
            f"| *reference:* {ref.label} | "
            + " | ".join(fmt(ref.metrics.get(c)) for c in MAIN_COLUMNS)
            + " |"
        )
    lines += ["", "\\* logged recall: exposure-biased, in no target. Blank: not applicable."]
    return lines


def _readings_table(result: Comparison, analysis: Analysis, split: str) -> list[str]:
    readings = analysis.readings.get(split, {})
    if not readings:
        return []
    lines = [
        "| model | exp. conv@50 at the two-tower's clicks | at 0.9x its clicks | bait share "
        "there | mean exp. conv over the common click range |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in readings.items():
        label = result.models[name].label
        cells = [
            cell(interval(r.get(k)))
            for k in ("conv_at_ref", "conv_at_share", "bait_at_share", "area")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _operating_table(result: Comparison, analysis: Analysis) -> list[str]:
    points = analysis.operating_points or {}
    if not points:
        return []
    lines = [
        "| model | beta per seed (chosen on val) | test exp. clicks@50 | test exp. conv@50 | "
        "test bait share@50 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, per_seed in points.items():
        ok = [p.test for p in per_seed if p]
        betas = ", ".join("-" if p is None else f"{float(p.beta):g}" for p in per_seed)
        cells = [
            cell(interval([r.clicks for r in ok])),
            cell(interval([r.conversions for r in ok])),
            cell(interval([r.bait for r in ok])),
        ]
        lines.append(f"| {result.models[name].label} | {betas} | " + " | ".join(cells) + " |")
    return lines


def _per_seed_table(result: Comparison, split: str) -> list[str]:
    seeds = result.seeds
    lines = [
        "| model | " + " | ".join(f"seed {s}: exp. clicks / conv@50" for s in seeds) + " |",
        "| --- |" + " ---: |" * len(seeds),
    ]
    for model in result.models.values():
        by_seed = model.runs_by_seed
        cells = []
        for s in seeds:
            run = by_seed.get(int(s))
            columns = None if run is None else run.splits.get(split)
            m = {} if columns is None else columns.metrics
            c, v = m.get("expected_clicks@50"), m.get("expected_conversions@50")
            cells.append("" if c is None else f"{fmt(c, 3)} / {fmt(v, 3)}")
        if any(cells):
            lines.append(f"| {model.label} | " + " | ".join(cells) + " |")
    return lines


def _test_day(result: Comparison, analysis: Analysis, n: int) -> list[str]:
    """The test day's table, frontier readings, operating points and targets."""
    lines = [f"## Test day: mean ± 95% interval over {n} seed(s)", ""]
    lines += _split_table(result, analysis, "test")
    lines += ["", "### Frontiers read at the two-tower's expected clicks (test)", ""]
    lines += _readings_table(result, analysis, "test")
    if analysis.operating_points:
        lines += [
            "",
            "### The serving knob set on the validation day, read on the test day",
            "",
        ]
        lines += _operating_table(result, analysis)
    lines += ["", "## Targets (test day, paired seeds)", ""]
    lines += ["| target | measured | verdict |", "| --- | --- | --- |"]
    for t in analysis.targets or []:
        verdict = {True: "pass", False: "**MISS**", None: "not measured"}[t.passed]
        lines.append(f"| {_escape(t.target)} | {_escape(t.measured)} | {verdict} |")
    return lines


def _validation_day(result: Comparison, analysis: Analysis, n: int) -> list[str]:
    """The validation day's table and frontier readings."""
    lines = [
        "",
        f"## Validation day (where choices are made): mean ± 95% interval, {n} seed(s)",
        "",
    ]
    lines += _split_table(result, analysis, "val")
    lines += ["", "### Frontiers read at the two-tower's expected clicks (validation)", ""]
    lines += _readings_table(result, analysis, "val")
    return lines


def _time_table(result: Comparison) -> list[str]:
    """Training and evaluation time of every run, their sum and this invocation's time."""
    lines = ["", "## Time per run", ""]
    lines += ["| model | seed | steps | samples | train s | eval s |"]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: |"]
    for model in result.models.values():
        for run in model.runs:
            tr = run.train
            lines.append(
                f"| {model.label} | {run.seed} | {tr.steps} | {tr.samples_trained} | "
                f"{tr.seconds} | {run.eval_seconds} |"
            )
    run_s = sum(
        _seconds(run.train.seconds) + _seconds(run.eval_seconds)
        for model in result.models.values()
        for run in model.runs
    )
    lines += ["", f"Sum over runs (train + eval): {run_s / 60:.1f} min."]
    if result.total_seconds is not None:
        # reused runs (--reuse) cost this invocation nothing: its wall time is not the runs'
        lines += [f"This invocation: {result.total_seconds / 60:.1f} min."]
    return lines


def comparison_markdown(
    result: Comparison, analysis: Analysis, sections: Sequence[str] = ()
) -> str:
    """The whole report from the comparison's records and what the analysis derived from them;
    `sections`: more Markdown lines placed before the per-seed table (the gate's,
    compare.gate_table)."""
    n = len(result.seeds)
    lines = [
        "# Comparison: DMMP, its baselines and the torch-rechub peers",
        "",
        "Reproduce with:",
        "",
        "```",
        result.command,
        "```",
        "",
        result.setup,
        "",
    ]
    if "test" in result.splits:
        lines += _test_day(result, analysis, n)
    if "val" in result.splits:
        lines += _validation_day(result, analysis, n)
    lines += list(sections)
    main_split = "test" if "test" in result.splits else result.splits[0]
    lines += ["", f"## Per seed ({main_split})", ""] + _per_seed_table(result, main_split)
    lines += ["", "## Notes", ""] + [f"- {_escape(note)}" for note in result.notes]
    lines += _time_table(result)
    lines.append("")
    return "\n".join(lines)


def _seconds(value: object) -> float:
    """A recorded duration, 0 when missing or not a finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0
