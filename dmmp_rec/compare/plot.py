"""reports/comparison.png: click recall@50 against expected conversions@50, a point per model.

The trade-off the paper is about in one picture: a click-only retriever sits right and low,
a conversion-aware one higher. Models are coloured points named in the legend (they often sit
close together); the reference rankers are grey squares labelled in place and frame the axes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

X_KEY, Y_KEY = "click_recall@50", "expected_conversions@50"
MARKERS = "oDv^<>ph*X"


def _point(entry: dict[str, Any]) -> tuple[float, float] | None:
    x, y = entry["metrics"].get(X_KEY), entry["metrics"].get(Y_KEY)
    ok = all(isinstance(v, int | float) and math.isfinite(v) for v in (x, y))
    return (float(x), float(y)) if ok else None


def plot_tradeoff(result: dict[str, Any], path: str | Path) -> Path:
    """Write the scatter plot; models without both metrics (the rankers) are left out."""
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=120)
    colors = plt.get_cmap("tab10")
    n = 0
    for entry in result["models"].values():
        point = _point(entry)
        if point is None:
            continue
        ax.scatter(
            *point,
            s=60,
            marker=MARKERS[n % len(MARKERS)],
            color=colors(n % 10),
            zorder=3,
            label=f"{entry.get('short', entry['label'])} ({point[0]:.3f}, {point[1]:.3f})",
        )
        n += 1
    for entry in result["references"].values():
        point = _point(entry)
        if point is None:
            continue
        ax.scatter(*point, s=50, marker="s", color="0.6", zorder=2)
        ax.annotate(entry["label"], point, textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xlabel("click recall@50 (held-out clicks of test users)")
    ax.set_ylabel("expected conversions@50 / oracle's")
    ax.set_title("Retrieval on held-out data: clicks vs conversions")
    ax.grid(True, alpha=0.3)
    if n:
        ax.legend(fontsize=7, loc="best", title="models (x, y)", title_fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
