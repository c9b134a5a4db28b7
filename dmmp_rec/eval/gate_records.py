"""The oracle-gate bound (eval.oracle_gate) as records: one row per exchange rate, a bound per
metric (platform totals, per-user means) and the whole bound of one model; JSON only in
`to_dict` / `from_dict`, with the keys and order reports have always had."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from dmmp_rec.eval.records import JsonObject, number


@dataclass
class RateBound:
    """The bound at one exchange rate (a conversion worth `rate` clicks): the best global
    knob on the flat and the learned gate, each user's own knob (oracle), and the gains."""

    rate: float
    global_flat: float
    global_learned: float
    oracle: float
    oracle_learned: float
    best_beta_flat: float
    best_beta_learned: float
    oracle_gain: float
    learned_gain: float
    captured: float
    # per hidden trait: correlation with each user's best knob value, and the gain of a gate
    # that knew the trait exactly (None: a report from before the traits were read)
    best_beta_correlation: dict[str, float] | None = None
    trait_gate_gain: dict[str, float] | None = None

    def to_dict(self) -> JsonObject:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RateBound:
        values: dict[str, Any] = {}
        for name in (f.name for f in fields(cls) if f.name in raw):
            v = raw[name]
            values[name] = (
                {k: number(x) for k, x in v.items()} if isinstance(v, dict) else number(v)
            )
        return cls(**values)


@dataclass
class MetricBound:
    """The bound on one metric over its exchange rates; `captured`: the mean learned gain
    over the mean oracle gain."""

    users: int
    rates: list[RateBound]
    oracle_gain: float
    learned_gain: float
    captured: float

    def to_dict(self) -> JsonObject:
        return {
            "users": self.users,
            "rates": [r.to_dict() for r in self.rates],
            "oracle_gain": self.oracle_gain,
            "learned_gain": self.learned_gain,
            "captured": self.captured,
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> MetricBound:
        rates = [RateBound.from_dict(r) for r in raw["rates"]]
        gains = (number(raw[k]) for k in ("oracle_gain", "learned_gain", "captured"))
        return cls(int(raw["users"]), rates, *gains)


@dataclass
class OracleGateBound:
    """One three-tower model's bound at K = k, on the grid `betas` around the flat gate's
    shared logit."""

    k: int
    flat_gate_logit: float
    betas: list[float]
    platform_total: MetricBound
    per_user_mean: MetricBound

    def metric(self, name: str) -> MetricBound:
        """The bound on "platform_total" or "per_user_mean"."""
        return {"platform_total": self.platform_total, "per_user_mean": self.per_user_mean}[name]

    def to_dict(self) -> JsonObject:
        return {
            "k": self.k,
            "flat_gate_logit": self.flat_gate_logit,
            "betas": list(self.betas),
            "platform_total": self.platform_total.to_dict(),
            "per_user_mean": self.per_user_mean.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> OracleGateBound:
        return cls(
            int(raw["k"]),
            number(raw["flat_gate_logit"]),
            [number(b) for b in raw["betas"]],
            MetricBound.from_dict(raw["platform_total"]),
            MetricBound.from_dict(raw["per_user_mean"]),
        )
