"""The evaluation report as typed records; `to_dict` gives the JSON object that eval.json files
hold, keys in the order they have always been written, and `from_dict` reads such a file back
(dmmp_rec/compare parses each report once, then works on the fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dmmp_rec.eval.gate_records import OracleGateBound
from dmmp_rec.eval.records import (
    Frontier,
    JsonObject,
    RankerScores,
    RetrievalSummary,
    TeacherRetrieval,
    number,
)


@dataclass
class EvalMeta:
    """Where the numbers come from: config, data, split, model shape, job and timings."""

    config: str | None
    data: str
    split: str
    variant: str
    teacher_kind: str
    world_size: int
    ground_truth: bool
    options: JsonObject  # the RetrievalOptions, as a dict
    timings_s: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None  # the step directory, when loaded from one
    config_values: JsonObject | None = None  # the whole resolved config

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "config": self.config,
            "data": self.data,
            "split": self.split,
            "variant": self.variant,
            "teacher_kind": self.teacher_kind,
            "world_size": self.world_size,
            "ground_truth": self.ground_truth,
            "options": self.options,
            "timings_s": dict(self.timings_s),
        }
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        if self.config_values is not None:
            out["config_values"] = self.config_values
        return out

    @classmethod
    def from_dict(cls, raw: JsonObject) -> EvalMeta:
        """The record of a report's "meta" object."""
        return cls(
            **{k: raw[k] for k in _META_FIELDS},
            timings_s=dict(raw.get("timings_s", {})),
            checkpoint=raw.get("checkpoint"),
            config_values=raw.get("config_values"),
        )


_META_FIELDS = (
    "config",
    "data",
    "split",
    "variant",
    "teacher_kind",
    "world_size",
    "ground_truth",
    "options",
)


@dataclass
class RetrievalReport:
    """What `eval.retrieval_eval.evaluate_retrieval` measures: the model's retrieval, the
    teacher as a retriever and the serving knob's frontier (when measured), the oracle-gate
    bound (three-tower models on the synthetic world) and the reference rankers."""

    retrieval: RetrievalSummary
    references: dict[str, RankerScores]
    teacher_retrieval: TeacherRetrieval | None = None
    frontier: Frontier | None = None
    oracle_gate: OracleGateBound | None = None

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"retrieval": self.retrieval.to_dict()}
        if self.teacher_retrieval is not None:
            out["teacher_retrieval"] = self.teacher_retrieval.to_dict()
        if self.frontier is not None:
            out["frontier"] = self.frontier.to_dict()
        if self.oracle_gate is not None:
            out["oracle_gate"] = self.oracle_gate.to_dict()
        out["references"] = {name: r.to_dict() for name, r in self.references.items()}
        return out

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RetrievalReport:
        tr, frontier, gate = (
            raw.get("teacher_retrieval"),
            raw.get("frontier"),
            raw.get("oracle_gate"),
        )
        return cls(
            RetrievalSummary.from_dict(raw["retrieval"]),
            {name: RankerScores.from_dict(r) for name, r in raw.get("references", {}).items()},
            TeacherRetrieval.from_dict(tr) if tr is not None else None,
            Frontier.from_dict(frontier) if frontier is not None else None,
            OracleGateBound.from_dict(gate) if gate is not None else None,
        )


@dataclass
class RateMetrics:
    """One task's probabilities against its labels (eval.teacher_eval)."""

    auc: float
    log_loss: float
    predicted_rate: float
    observed_rate: float
    calibration: float

    def to_dict(self) -> dict[str, float]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RateMetrics:
        return cls(*(number(raw[name]) for name in _RATE_FIELDS))


_RATE_FIELDS = ("auc", "log_loss", "predicted_rate", "observed_rate", "calibration")
TASKS = ("ctr", "cvr", "ctcvr")


@dataclass
class ImpressionMetrics:
    """A "teacher" or "bayes" section: CTR, CVR (clicked rows) and CTCVR metrics, and what
    they rest on (`counts`: the teacher's rows / clicks / conversions, Bayes' "hour")."""

    ctr: RateMetrics
    cvr: RateMetrics
    ctcvr: RateMetrics
    counts: JsonObject = field(default_factory=dict)

    def task(self, name: str) -> RateMetrics:
        """The metrics of task "ctr", "cvr" or "ctcvr"."""
        return {"ctr": self.ctr, "cvr": self.cvr, "ctcvr": self.ctcvr}[name]

    def to_dict(self) -> JsonObject:
        return {t: self.task(t).to_dict() for t in TASKS} | self.counts

    @classmethod
    def from_dict(cls, raw: JsonObject) -> ImpressionMetrics:
        counts = {k: v for k, v in raw.items() if k not in TASKS}
        ctr, cvr, ctcvr = (RateMetrics.from_dict(raw[t]) for t in TASKS)
        return cls(ctr, cvr, ctcvr, counts)


@dataclass
class EvalReport:
    """One split's evaluation: impression metrics of the teacher and the student, the Bayes
    ceilings (synthetic world only), the retrieval sections and the meta record. A peer
    model's report (dmmp_rec/compare) holds only some sections; the others are None."""

    teacher: ImpressionMetrics | None
    student_impressions: dict[str, float] | None
    bayes: ImpressionMetrics | None
    retrieval: RetrievalReport | None
    meta: EvalMeta | None

    @property
    def our_meta(self) -> EvalMeta:
        """The meta record of one of our models' reports (a peer's has none)."""
        if self.meta is None:
            raise ValueError("this report has no meta section (a peer model's report)")
        return self.meta

    def to_dict(self) -> JsonObject:
        out: JsonObject = {}
        if self.teacher is not None:
            out["teacher"] = self.teacher.to_dict()
        if self.student_impressions is not None:
            out["student_impressions"] = self.student_impressions
        if self.bayes is not None:
            out["bayes"] = self.bayes.to_dict()
        if self.retrieval is not None:
            out.update(self.retrieval.to_dict())
        if self.meta is not None:
            out["meta"] = self.meta.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: JsonObject) -> EvalReport:
        """The records of a report file's JSON (any of its sections may be absent)."""
        teacher, bayes, meta = raw.get("teacher"), raw.get("bayes"), raw.get("meta")
        return cls(
            ImpressionMetrics.from_dict(teacher) if teacher is not None else None,
            _floats(raw.get("student_impressions")),
            ImpressionMetrics.from_dict(bayes) if bayes is not None else None,
            RetrievalReport.from_dict(raw) if "retrieval" in raw else None,
            EvalMeta.from_dict(meta) if meta is not None else None,
        )


def _floats(raw: JsonObject | None) -> dict[str, float] | None:
    return None if raw is None else {k: number(v) for k, v in raw.items()}
