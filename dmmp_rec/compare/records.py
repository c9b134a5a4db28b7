"""The comparison as records while it runs: every model's runs, each run's per-split columns
(flattened from its evaluation reports, dmmp_rec.compare.flatten), and the Bayes and reference
rows. `Comparison.to_dict` gives comparison.json's object, keys in the order it has always had;
the analysis (dmmp_rec.compare.analysis) then reads that JSON form, which is also what it
re-reads from a finished comparison.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dmmp_rec.compare.flatten import (
    bayes_metrics,
    frontier_points,
    model_metrics,
    oracle_gate,
    reference_rows,
)
from dmmp_rec.eval.records import JsonObject
from dmmp_rec.eval.report_types import EvalReport

# the training summary's fields a run record keeps (summary.json holds more)
TRAIN_FIELDS = ("steps", "samples_trained", "seconds", "samples_per_s", "validation", "best")


@dataclass
class RunResult:
    """One trained and evaluated run: its training summary (summary.json's object), its
    report on each split, and the seconds the evaluation took."""

    summary: JsonObject
    reports: dict[str, EvalReport]
    eval_s: float


@dataclass
class SplitColumns:
    """One run on one split, as the comparison reads it: the table's columns, the serving
    knob's frontier points at K = 50 and the oracle-gate bound (None where not measured)."""

    metrics: dict[str, float | None]
    frontier: list[JsonObject] | None
    oracle_gate: JsonObject | None

    @classmethod
    def of(cls, report: EvalReport) -> SplitColumns:
        return cls(model_metrics(report), frontier_points(report), oracle_gate(report))

    def to_dict(self) -> JsonObject:
        return {"metrics": self.metrics, "frontier": self.frontier, "oracle_gate": self.oracle_gate}


@dataclass
class RunRecord:
    """One seed of one model in comparison.json."""

    seed: int
    train: JsonObject
    eval_seconds: float
    splits: dict[str, SplitColumns]

    @classmethod
    def of(cls, seed: int, run: RunResult) -> RunRecord:
        train = {k: run.summary.get(k) for k in TRAIN_FIELDS}
        splits = {split: SplitColumns.of(r) for split, r in run.reports.items()}
        return cls(seed, train, round(run.eval_s, 1), splits)

    def to_dict(self) -> JsonObject:
        return {
            "seed": self.seed,
            "train": self.train,
            "eval_seconds": self.eval_seconds,
            "splits": {split: s.to_dict() for split, s in self.splits.items()},
        }


@dataclass
class ModelEntry:
    """One model of the comparison: how it is named and built, and its runs in seed order."""

    label: str
    short: str
    family: str
    overrides: list[str]
    runs: list[RunRecord] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return {
            "label": self.label,
            "short": self.short,
            "family": self.family,
            "overrides": list(self.overrides),
            "runs": [r.to_dict() for r in self.runs],
        }


@dataclass
class Comparison:
    """comparison.json before the analysis: the setup, every model's runs, the Bayes ceiling
    and the reference rankers per split (from the first report that has them)."""

    command: str
    setup: str
    config: str | None
    world_seed: int
    seeds: list[int]
    splits: list[str]
    steps: int
    global_batch: int
    nproc: int
    notes: list[str]
    models: dict[str, ModelEntry] = field(default_factory=dict)
    bayes: dict[str, dict[str, float | None]] = field(default_factory=dict)
    references: dict[str, dict[str, JsonObject]] = field(default_factory=dict)
    complete: bool = False
    total_seconds: float | None = None  # written once every run is done

    def add_run(self, model: str, seed: int, run: RunResult) -> None:
        """Record a finished run of `model` (its entry must exist) and the first Bayes and
        reference rows of each split."""
        self.models[model].runs.append(RunRecord.of(seed, run))
        for split, report in run.reports.items():
            if report.bayes is not None:
                self.bayes.setdefault(split, bayes_metrics(report))
            if report.retrieval is not None:
                self.references.setdefault(split, reference_rows(report))

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "command": self.command,
            "setup": self.setup,
            "config": self.config,
            "world_seed": self.world_seed,
            "seeds": list(self.seeds),
            "splits": list(self.splits),
            "steps": self.steps,
            "global_batch": self.global_batch,
            "nproc": self.nproc,
            "models": {name: m.to_dict() for name, m in self.models.items()},
            "bayes": dict(self.bayes),
            "references": dict(self.references),
            "notes": list(self.notes),
            "complete": self.complete,
        }
        if self.total_seconds is not None:
            out["total_seconds"] = self.total_seconds
        return out
