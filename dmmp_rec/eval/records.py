"""Typed records of the retrieval sections of an evaluation report: which ranker, on which
users (scope), which metric, at which K. Evaluation builds them, the report holds them and the
comparison reads their fields; they become JSON objects only in `to_dict` (and come back from a
report file through `from_dict`), with the keys, order and values reports have always had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

# a JSON object as a report file holds it: the form records take only at the file boundary
JsonObject = dict[str, Any]
ByK = dict[int, float]  # metric value at each K (JSON: {"10": value, ...}; NaN for none)


def number(x: Any) -> float:
    """A JSON number back as a float: null (NaN written by a report) as NaN, "inf"/"-inf"
    strings (the serving knob's ends) as infinities."""
    return math.nan if x is None else float(x)


def by_k_from_dict(raw: JsonObject) -> ByK:
    """{K: value} from a report's {"K": value}."""
    return {int(k): number(v) for k, v in raw.items()}


def by_k_to_dict(values: ByK) -> dict[str, float]:
    """A report's {"K": value} (string keys, as JSON objects need)."""
    return {str(k): v for k, v in values.items()}


class MetricKey(NamedTuple):
    """What one per-user metric array measures: `ranker` on the users of `scope`."""

    ranker: str
    scope: str
    metric: str

    def text(self) -> str:
        """The key's string form, for the gather across ranks (string-keyed arrays)."""
        return f"{self.ranker}/{self.scope}/{self.metric}"

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        ranker, scope, metric = text.split("/")
        return cls(ranker, scope, metric)


@dataclass
class PerUser:
    """Per-user metric rows [users, len(ks)] of every ranker, scope and metric before they are
    averaged; `sample_users` are the sample's user ids when the oracle-gate bound reads their
    hidden traits. Values stay per user so that the means are taken once, after the gather."""

    values: dict[MetricKey, np.ndarray] = field(default_factory=dict)
    sample_users: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """String-keyed arrays for `distributed.collectives.on_main` (it concatenates by key)."""
        out = {key.text(): v for key, v in self.values.items()}
        if self.sample_users is not None:
            out[_SAMPLE_USERS] = self.sample_users
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PerUser:
        """The record back from `to_arrays`' form (every rank's rows concatenated)."""
        values = {MetricKey.parse(k): v for k, v in arrays.items() if k != _SAMPLE_USERS}
        return cls(values, arrays.get(_SAMPLE_USERS))


_SAMPLE_USERS = "sample_users"


@dataclass
class ScopeScores:
    """One ranker's metrics on one scope of users: metric -> {K: mean (or total)}."""

    metrics: dict[str, ByK] = field(default_factory=dict)

    def at(self, metric: str, k: int) -> float | None:
        """The value of `metric` at K = k, None when the report does not hold it."""
        return self.metrics.get(metric, {}).get(k)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {m: by_k_to_dict(v) for m, v in self.metrics.items()}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> ScopeScores:
        return cls({m: by_k_from_dict(v) for m, v in raw.items()})


@dataclass
class RankerScores:
    """One ranker's metrics on each scope it was measured on ("all_users", "sample",
    "teacher_sample")."""

    scopes: dict[str, ScopeScores] = field(default_factory=dict)

    def at(self, scope: str, metric: str, k: int) -> float | None:
        """The value at (scope, metric, K), None when the report does not hold it."""
        scores = self.scopes.get(scope)
        return None if scores is None else scores.at(metric, k)

    def to_dict(self) -> JsonObject:
        return {s: v.to_dict() for s, v in self.scopes.items()}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RankerScores:
        return cls({s: ScopeScores.from_dict(v) for s, v in raw.items()})


@dataclass
class FrontierPoint:
    """The model at one value of the serving knob beta: the mean conversion gate there and the
    sample's metrics (eval.frontier.POINT_METRICS)."""

    beta: float
    mean_gate_conversion: float
    scores: ScopeScores

    def to_dict(self) -> JsonObject:
        return {
            "beta": self.beta,
            "mean_gate_conversion": self.mean_gate_conversion,
            **self.scores.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> FrontierPoint:
        metrics = {k: v for k, v in raw.items() if k not in ("beta", "mean_gate_conversion")}
        return cls(
            number(raw["beta"]), number(raw["mean_gate_conversion"]), ScopeScores.from_dict(metrics)
        )


@dataclass
class Frontier:
    """The serving knob's grid, one point per beta in grid order, with the Ks measured."""

    k: list[int]
    points: list[FrontierPoint]

    def to_dict(self) -> JsonObject:
        return {"k": list(self.k), "points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> Frontier:
        return cls([int(k) for k in raw["k"]], [FrontierPoint.from_dict(p) for p in raw["points"]])


@dataclass
class TeacherRetrieval:
    """The teacher ranking the whole catalogue for `users` users of the sample, the student as
    trained on the same users, and its best frontier point (and that point's beta) per K."""

    users: int
    teacher: ScopeScores
    student: ScopeScores
    student_best: ByK
    student_best_beta: ByK

    def to_dict(self) -> JsonObject:
        return {
            "users": self.users,
            "teacher": self.teacher.to_dict(),
            "student": self.student.to_dict(),
            "student_best": by_k_to_dict(self.student_best),
            "student_best_beta": by_k_to_dict(self.student_best_beta),
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> TeacherRetrieval:
        return cls(
            int(raw["users"]),
            ScopeScores.from_dict(raw["teacher"]),
            ScopeScores.from_dict(raw["student"]),
            by_k_from_dict(raw["student_best"]),
            by_k_from_dict(raw["student_best_beta"]),
        )


@dataclass
class RetrievalSummary:
    """The report's "retrieval" section: the split's catalogue and users, the FAISS index, and
    the model's own scores on each scope (written beside the other fields, as always)."""

    k: list[int]
    split: str
    catalogue: str
    items: int
    users: int
    users_with_clicks: int
    users_with_conversions: int
    oracle_sample_users: int
    oracle_sample_seed: int
    mean_gate: list[float]
    index: str
    model: RankerScores

    def to_dict(self) -> JsonObject:
        return {
            "k": list(self.k),
            "split": self.split,
            "catalogue": self.catalogue,
            "items": self.items,
            "users": self.users,
            "users_with_clicks": self.users_with_clicks,
            "users_with_conversions": self.users_with_conversions,
            "oracle_sample_users": self.oracle_sample_users,
            "oracle_sample_seed": self.oracle_sample_seed,
            "mean_gate": list(self.mean_gate),
            "index": self.index,
            **self.model.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RetrievalSummary:
        scopes = {k: v for k, v in raw.items() if k not in _SUMMARY_FIELDS}
        values: JsonObject = {name: raw[name] for name in _SUMMARY_FIELDS}
        values["k"] = [int(k) for k in raw["k"]]
        values["mean_gate"] = [number(g) for g in raw["mean_gate"]]
        return cls(**values, model=RankerScores.from_dict(scopes))


_SUMMARY_FIELDS = (
    "k",
    "split",
    "catalogue",
    "items",
    "users",
    "users_with_clicks",
    "users_with_conversions",
    "oracle_sample_users",
    "oracle_sample_seed",
    "mean_gate",
    "index",
)
