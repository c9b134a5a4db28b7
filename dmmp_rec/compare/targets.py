"""The issue's targets, checked against measured numbers; a missed target is reported, never
hidden, and a target whose inputs are missing says so instead of passing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Metrics = dict[str, float | None]

BAYES_GAP = 0.02  # every teacher AUC within this of its Bayes-optimal ceiling


@dataclass
class TargetResult:
    target: str  # what the issue asks, in words
    measured: str  # the numbers behind the verdict
    passed: bool | None  # None: could not be measured

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: "not measured"}[self.passed]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ratio_target(
    text: str, a: float | None, b: float | None, names: tuple[str, str], lo: float
) -> TargetResult:
    """a >= lo * b."""
    a, b = _num(a), _num(b)
    if a is None or b is None:
        return TargetResult(text, f"{names[0]} {a}, {names[1]} {b}", None)
    ratio = a / b if b > 0 else math.inf if a > 0 else 1.0
    measured = f"{names[0]} {a:.4f} vs {names[1]} {b:.4f}: ratio {ratio:.3f} (need >= {lo})"
    return TargetResult(text, measured, a >= lo * b)


def check_targets(rows: dict[str, Metrics], bayes: Metrics) -> list[TargetResult]:
    """Every target of the issue, on the held-out numbers of `rows` (keyed by model name)."""

    def get(name: str, key: str) -> float | None:
        return rows.get(name, {}).get(key)

    out = [
        _ratio_target(
            "student vs two-tower CTR-only: expected conversions@50 at least 15% higher",
            get("dmmp", "expected_conversions@50"),
            get("two_tower", "expected_conversions@50"),
            ("DMMP", "two-tower"),
            1.15,
        )
    ]
    bait, bait_2t = _num(get("dmmp", "bait_share@50")), _num(get("two_tower", "bait_share@50"))
    text = "student vs two-tower CTR-only: click-bait share of the top 50 at most half"
    if bait is None or bait_2t is None:
        out.append(TargetResult(text, f"DMMP {bait}, two-tower {bait_2t}", None))
    else:
        out.append(
            TargetResult(
                text,
                f"DMMP {bait:.4f} vs two-tower {bait_2t:.4f} (need <= {0.5 * bait_2t:.4f})",
                bait <= 0.5 * bait_2t,
            )
        )
    out.append(
        _ratio_target(
            "student vs two-tower CTR-only: click recall@50 at least 0.95 of it",
            get("dmmp", "click_recall@50"),
            get("two_tower", "click_recall@50"),
            ("DMMP", "two-tower"),
            0.95,
        )
    )
    out.append(
        _ratio_target(
            "student vs three towers without distillation: expected conversions@50 >= 3% higher",
            get("dmmp", "expected_conversions@50"),
            get("no_distill", "expected_conversions@50"),
            ("DMMP", "no-distill"),
            1.03,
        )
    )
    for other, label in (("teacher_shared_bottom", "shared-bottom ESMM"), ("teacher_mmoe", "MMoE")):
        out.append(
            _ratio_target(
                f"teacher (CGC/PLE + ESMM): CTCVR AUC at least that of {label}",
                get("dmmp", "ctcvr_auc"),
                get(other, "ctcvr_auc"),
                ("CGC/PLE", label),
                1.0,
            )
        )
    for key, task in (("ctr_auc", "CTR"), ("cvr_auc", "CVR"), ("ctcvr_auc", "CTCVR")):
        auc, ceiling = _num(get("dmmp", key)), _num(bayes.get(key))
        text = f"teacher (CGC/PLE + ESMM): {task} AUC within {BAYES_GAP} of its Bayes ceiling"
        if auc is None or ceiling is None:
            out.append(TargetResult(text, f"AUC {auc}, ceiling {ceiling}", None))
        else:
            gap = ceiling - auc
            out.append(
                TargetResult(
                    text,
                    f"AUC {auc:.4f}, ceiling {ceiling:.4f}: gap {gap:.4f}",
                    gap <= BAYES_GAP,
                )
            )
    return out
