"""The evaluation report as typed records; `to_dict` gives the JSON object that eval.json files
hold (and dmmp_rec/compare reads), keys in the order they have always been written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    options: dict[str, Any]  # the RetrievalOptions, as a dict
    timings_s: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None  # the step directory, when loaded from one
    config_values: dict[str, Any] | None = None  # the whole resolved config

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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


@dataclass
class EvalReport:
    """One split's evaluation: impression metrics of the teacher and the student, the Bayes
    ceilings (synthetic world only), the retrieval sections and the meta record."""

    teacher: dict[str, Any]
    student_impressions: dict[str, float]
    bayes: dict[str, Any] | None
    # what evaluate_retrieval returns: "retrieval", "references", and "frontier" /
    # "teacher_retrieval" when measured
    retrieval: dict[str, Any]
    meta: EvalMeta

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "teacher": self.teacher,
            "student_impressions": self.student_impressions,
        }
        if self.bayes is not None:
            out["bayes"] = self.bayes
        out.update(self.retrieval)
        out["meta"] = self.meta.to_dict()
        return out
