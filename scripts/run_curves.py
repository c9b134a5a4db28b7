"""A training run's validation curve and loss weights, read from its TensorBoard logs.

    python scripts/run_curves.py RUN_DIR [--steps 1500,3000]

Prints every validation (val/* scalars, one row per validated step) and the loss weights
(weight/*) at the given steps with the largest relative change between the first and the last
of them: how docs/model.md measures whether a weighting settles and where training peaks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _scalars(run: Path) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _nearest(series: dict[int, float], step: int) -> float:
    best = min(series, key=lambda s: abs(s - step))
    return series[best]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--steps", default="1500,3000", help="steps at which to read the weights")
    args = p.parse_args()
    scalars = _scalars(args.run)
    val = sorted(t for t in scalars if t.startswith("val/") and t != "val/rows")
    steps = sorted({s for t in val for s in scalars[t]})
    print("step " + " ".join(f"{t[4:]:>24}" for t in val))
    for s in steps:
        print(f"{s:>4} " + " ".join(f"{scalars[t].get(s, float('nan')):>24.4f}" for t in val))
    at = [int(x) for x in args.steps.split(",")]
    weights = sorted(t for t in scalars if t.startswith("weight/"))
    if weights:
        print(f"\nweights at steps {at} (nearest logged step) and change first -> last:")
        worst = 0.0
        for t in weights:
            values = [_nearest(scalars[t], s) for s in at]
            change = values[-1] / values[0] - 1 if values[0] else float("nan")
            worst = max(worst, abs(change))
            print(f"  {t[7:]:<22} " + " ".join(f"{v:>9.4f}" for v in values) + f"  {change:+.1%}")
        print(f"largest relative change of any weight: {worst:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
