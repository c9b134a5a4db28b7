"""reports/comparison.png: expected conversions@50 against expected clicks@50 on the test day.

The claim in one picture: a three-tower model is a curve traced by the serving knob (click
tower at the right end, conversion tower at the top), the two-tower and the DSSM peer are
points; a curve above a point at the same clicks retrieves more conversions for as many
clicks. Curves are the seed means at each beta of the grid; points carry the 95% interval of
the seed means as error bars. Popularity frames the axes; the oracles sit at 1.0.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

from dmmp_rec.compare import analysis  # noqa: E402
from dmmp_rec.compare.records import Comparison  # noqa: E402
from dmmp_rec.compare.stats import interval  # noqa: E402

MARKERS = "oDv^<>ph*X"


def _mean_curve(result: Comparison, name: str, split: str) -> np.ndarray | None:
    curves = [
        analysis.curve(run.splits[split]) for run in result.models[name].runs if split in run.splits
    ]
    if not curves or len({c.shape for c in curves}) != 1:
        return None
    return np.nanmean(np.stack(curves), axis=0)


def plot_frontiers(result: Comparison, path: str | Path) -> Path:
    """Write the plot for the test day (the validation day when test was not evaluated)."""
    split = "test" if "test" in result.splits else result.splits[0]
    fig, ax = plt.subplots(figsize=(8.5, 5.8), dpi=120)
    colors = plt.get_cmap("tab10")
    n = 0
    for name, entry in result.models.items():
        label = entry.short
        if analysis.has_frontier(result, name):
            c = _mean_curve(result, name, split)
            if c is None:
                continue
            ax.plot(c[:, 0], c[:, 1], marker=MARKERS[n % len(MARKERS)], ms=4, lw=1.5,
                    color=colors(n % 10), label=f"{label} (frontier over beta)")  # fmt: skip
            beta0 = [j for j, p in enumerate(entry.runs[0].splits[split].frontier or [])
                     if p.beta == 0.0]  # fmt: skip
            if beta0:
                x, y = c[beta0[0], :2]
                ax.scatter(x, y, s=70, facecolors="none", edgecolors=colors(n % 10))
        else:
            xs = interval(analysis.values(result, name, split, analysis.CLICKS))
            ys = interval(analysis.values(result, name, split, analysis.CONVERSIONS))
            if not xs.n or not ys.n:
                continue
            err = [[xs.half_width if xs.n > 1 else 0], [ys.half_width if ys.n > 1 else 0]]
            ax.errorbar([xs.mean], [ys.mean], xerr=err[0], yerr=err[1], fmt="s", ms=7,
                        color=colors(n % 10), capsize=3, label=f"{label} (one point)")  # fmt: skip
        n += 1
    pop = result.references.get(split, {}).get("popularity")
    if pop is not None:
        m = pop.metrics
        x, y = m.get(analysis.CLICKS), m.get(analysis.CONVERSIONS)
        if x is not None and y is not None:
            ax.scatter([x], [y], marker="s", color="0.6", s=40)
            ax.annotate("popularity", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    seeds = len(result.seeds)
    ax.set_xlabel("expected clicks@50 / oracle's (true pCTR of the retrieved items)")
    ax.set_ylabel("expected conversions@50 / oracle's (true pCTCVR)")
    ax.set_title(
        f"Retrieval on the {split} day, mean of {seeds} seed(s); circles: beta = 0 (as trained)",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    if n:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
