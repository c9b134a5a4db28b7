"""The comparison report's section on the gate (compare.gate_analysis) as Markdown."""

from __future__ import annotations

from dmmp_rec.compare.findings import GateSection
from dmmp_rec.compare.records import Comparison
from dmmp_rec.compare.table import cell, fmt

_LABELS = {"platform_total": "platform totals", "per_user_mean": "per-user mean"}


def _bound_rows(section: GateSection, labels: dict[str, str]) -> list[str]:
    lines = [
        "| model | metric | oracle-gate gain | learned-gate gain | captured | best beta vs "
        "propensity / purchase_rho (r) | gain of a gate knowing propensity / purchase_rho |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, metrics in section.bound.items():
        for metric, b in metrics.items():
            r = b.trait_correlation
            traits = f"{fmt(r.get('propensity'), 2)} / {fmt(r.get('purchase_rho'), 2)}"
            t = b.trait_gate_gain
            knows = f"{fmt(t.get('propensity'))} / {fmt(t.get('purchase_rho'))}"
            lines.append(
                f"| {labels.get(name, name)} | {_LABELS[metric]} | {cell(b.oracle_gain)} | "
                f"{cell(b.learned_gain)} | {cell(b.captured)} | {traits} | {knows} |"
            )
    return lines


def _area_rows(section: GateSection, labels: dict[str, str]) -> list[str]:
    lines = ["| model | per seed |", "| --- | --- |"]
    for name, areas in section.areas.items():
        lines.append(f"| {labels.get(name, name)} | {' / '.join(fmt(a, 2) for a in areas)} |")
    return lines


def gate_markdown(result: Comparison, gate: dict[str, GateSection]) -> list[str]:
    """One block per split of `gate` (compare.gate_analysis.gate_section's sections): the
    bound, the platform-total frontier areas and the targets."""
    labels = {name: m.label for name, m in result.models.items()}
    lines: list[str] = []
    for split, section in gate.items():
        if not section.bound and not section.areas:
            continue
        lines += ["", f"## The gate's worth ({split}): oracle-gate bound and platform totals", ""]
        lines += [
            "Gains are over one global serving knob on a flat gate (the same towers), mean over "
            "the exchange rates (eval.oracle_gate); mean ± 95% interval over seeds.",
            "",
        ]
        lines += _bound_rows(section, labels)
        lines += [
            "",
            "Platform-total frontier area (mean best total exp. conversions@50 over the click "
            "range every frontier of the seed spans, sample users):",
            "",
        ]
        lines += _area_rows(section, labels)
        if section.targets:
            lines += ["", "| target | per-seed ratios | difference | verdict |"]
            lines += ["| --- | --- | --- | --- |"]
            for t in section.targets:
                ratios = " / ".join(fmt(r, 3) for r in t.paired.ratios)
                verdict = {True: "pass", False: "**MISS**", None: "not measured"}[t.passed]
                lines.append(f"| {t.target} | {ratios} | {cell(t.paired.difference)} | {verdict} |")
    return lines
