"""What the analysis derives from a comparison's runs, as records: per-seed frontier readings,
the serving knob's operating points, the targets' verdicts and the gate section. The tables
read their fields; they become comparison.json's added sections only in `to_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dmmp_rec.compare.stats import Interval, Paired
from dmmp_rec.eval.records import JsonObject

READING_KEYS = ("conv_at_ref", "conv_at_share", "bait_at_share", "area")


@dataclass
class Readings:
    """One model's frontier read per seed (seed order; None where not measured): the best
    expected conversions at the reference's clicks and at a share of them, the bait share
    there, and the frontier's area over the common click range."""

    conv_at_ref: list[float | None] = field(default_factory=list)
    conv_at_share: list[float | None] = field(default_factory=list)
    bait_at_share: list[float | None] = field(default_factory=list)
    area: list[float | None] = field(default_factory=list)

    @classmethod
    def unmeasured(cls, n: int) -> Readings:
        """A model without readings at `n` seeds."""
        return cls([None] * n, [None] * n, [None] * n, [None] * n)

    def get(self, key: str) -> list[float | None]:
        """The per-seed values of one of READING_KEYS."""
        values: list[float | None] = getattr(self, key)
        return values

    def to_dict(self) -> dict[str, list[float | None]]:
        return {k: self.get(k) for k in READING_KEYS}


@dataclass
class KnobReading:
    """Expected clicks, conversions and bait share at one knob value on one day."""

    clicks: float | None
    conversions: float | None
    bait: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"clicks": self.clicks, "conversions": self.conversions, "bait": self.bait}


@dataclass
class OperatingPoint:
    """The knob value chosen on the validation day and what it gives there and on the test day."""

    beta: float
    val: KnobReading
    test: KnobReading

    def to_dict(self) -> JsonObject:
        return {"beta": self.beta, "val": self.val.to_dict(), "test": self.test.to_dict()}


@dataclass
class TargetResult:
    """A product target's verdict on the test day and the numbers behind it."""

    target: str  # what is asked, in words
    measured: str  # the numbers behind the verdict
    passed: bool | None  # None: could not be measured
    inputs: Paired | Interval  # the paired seeds (values, ratios, difference) or one interval

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: "not measured"}[self.passed]


@dataclass
class BoundSummary:
    """One model's oracle-gate bound on one metric over the seeds: the gains' intervals, their
    per-seed values, and the per-trait means (correlation with the best knob value, gain of a
    gate that knew the trait)."""

    oracle_gain: Interval
    learned_gain: Interval
    captured: Interval
    per_seed: dict[str, list[float | None]]
    trait_correlation: dict[str, float]
    trait_gate_gain: dict[str, float]

    def to_dict(self) -> JsonObject:
        return {
            "oracle_gain": self.oracle_gain.to_dict(),
            "learned_gain": self.learned_gain.to_dict(),
            "captured": self.captured.to_dict(),
            "per_seed": self.per_seed,
            "trait_correlation": self.trait_correlation,
            "trait_gate_gain": self.trait_gate_gain,
        }


@dataclass
class GateTarget:
    """A gate target: what is asked, the paired seeds behind it and the verdict."""

    target: str
    paired: Paired
    passed: bool | None

    def to_dict(self) -> JsonObject:
        return {"target": self.target, "paired": self.paired.to_dict(), "passed": self.passed}


@dataclass
class GateSection:
    """The gate's worth on one split: platform-total frontier areas per model and seed, the
    bound per model and metric, and the targets against no-gate."""

    areas: dict[str, list[float | None]]
    bound: dict[str, dict[str, BoundSummary]]
    targets: list[GateTarget]

    def to_dict(self) -> JsonObject:
        return {
            "areas": self.areas,
            "bound": {
                name: {metric: b.to_dict() for metric, b in metrics.items()}
                for name, metrics in self.bound.items()
            },
            "targets": [t.to_dict() for t in self.targets],
        }


@dataclass
class Analysis:
    """Everything the analysis adds to a comparison: per split the interval of every column
    per model and the frontier readings; the operating points (with val and test); the
    targets (with test); the gate section per split."""

    summary: dict[str, dict[str, dict[str, Interval]]]
    readings: dict[str, dict[str, Readings]]
    operating_points: dict[str, list[OperatingPoint | None]] | None
    targets: list[TargetResult] | None
    gate: dict[str, GateSection]

    def to_dict(self) -> JsonObject:
        """comparison.json's added sections, in the order they have always been written."""
        out: JsonObject = {
            "summary": {
                split: {
                    name: {c: iv.to_dict() for c, iv in cols.items()} for name, cols in s.items()
                }
                for split, s in self.summary.items()
            },
            "readings": {
                split: {name: r.to_dict() for name, r in rs.items()}
                for split, rs in self.readings.items()
            },
        }
        if self.operating_points is not None:
            out["operating_points"] = {
                name: [None if p is None else p.to_dict() for p in points]
                for name, points in self.operating_points.items()
            }
        if self.targets is not None:
            out["targets"] = [t.to_dict() for t in self.targets]
        out["gate"] = {split: g.to_dict() for split, g in self.gate.items()}
        return out
