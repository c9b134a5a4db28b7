"""The comparison as records: every model's runs, each run's per-split columns (flattened from
its evaluation reports, dmmp_rec.compare.flatten), and the Bayes and reference rows. The
analysis, the tables and the plot read these fields; `Comparison.to_dict` gives comparison.json's
object (keys in the order it has always had) and `Comparison.from_dict` reads one back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dmmp_rec.compare.columns import KnobPoint, ReferenceRow, finite
from dmmp_rec.compare.flatten import (
    bayes_metrics,
    frontier_points,
    model_metrics,
    oracle_gate,
    reference_rows,
)
from dmmp_rec.eval.gate_records import OracleGateBound
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
class TrainFigures:
    """What a run's training summary says of it in comparison.json: steps, samples, seconds,
    throughput, the last validation metrics and the best checkpoint (None where the summary
    lacks them)."""

    steps: int | None
    samples_trained: int | None
    seconds: float | None
    samples_per_s: float | None
    validation: dict[str, float] | None
    best: JsonObject | None

    @classmethod
    def of(cls, summary: JsonObject) -> TrainFigures:
        """The figures of a summary.json object (numbers as JSON holds them)."""
        return cls(**json_safe({k: summary.get(k) for k in TRAIN_FIELDS}))

    def to_dict(self) -> JsonObject:
        return {k: getattr(self, k) for k in TRAIN_FIELDS}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> TrainFigures:
        return cls(**{k: raw[k] for k in TRAIN_FIELDS})


@dataclass
class SplitColumns:
    """One run on one split, as the comparison reads it: the table's columns, the serving
    knob's frontier points at K = 50 and the oracle-gate bound (None where not measured)."""

    metrics: dict[str, float | None]
    frontier: list[KnobPoint] | None
    oracle_gate: OracleGateBound | None = None

    @classmethod
    def of(cls, report: EvalReport) -> SplitColumns:
        return cls(model_metrics(report), frontier_points(report), oracle_gate(report))

    def metric(self, key: str) -> float | None:
        """Column `key` as a finite float, None where missing or not finite."""
        return finite(self.metrics.get(key))

    def to_dict(self) -> JsonObject:
        frontier = None if self.frontier is None else [p.to_dict() for p in self.frontier]
        gate = None if self.oracle_gate is None else self.oracle_gate.to_dict()
        return {"metrics": self.metrics, "frontier": frontier, "oracle_gate": gate}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> SplitColumns:
        frontier, gate = raw.get("frontier"), raw.get("oracle_gate")
        return cls(
            dict(raw["metrics"]),
            None if frontier is None else [KnobPoint.from_dict(p) for p in frontier],
            None if gate is None else OracleGateBound.from_dict(gate),
        )


@dataclass
class RunRecord:
    """One seed of one model in comparison.json."""

    seed: int
    train: TrainFigures
    eval_seconds: float | None  # None: not recorded
    splits: dict[str, SplitColumns]

    @classmethod
    def of(cls, seed: int, run: RunResult) -> RunRecord:
        splits = {split: SplitColumns.of(r) for split, r in run.reports.items()}
        return cls(seed, TrainFigures.of(run.summary), finite(round(run.eval_s, 1)), splits)

    def metric(self, split: str, key: str) -> float | None:
        """Column `key` on `split` (finite), None where the run has no such value."""
        columns = self.splits.get(split)
        return None if columns is None else columns.metric(key)

    def to_dict(self) -> JsonObject:
        return {
            "seed": self.seed,
            "train": self.train.to_dict(),
            "eval_seconds": self.eval_seconds,
            "splits": {split: s.to_dict() for split, s in self.splits.items()},
        }

    @classmethod
    def from_dict(cls, raw: JsonObject) -> RunRecord:
        splits = {split: SplitColumns.from_dict(s) for split, s in raw["splits"].items()}
        train = TrainFigures.from_dict(raw["train"])
        return cls(int(raw["seed"]), train, raw["eval_seconds"], splits)


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

    @property
    def runs_by_seed(self) -> dict[int, RunRecord]:
        return {r.seed: r for r in self.runs}

    @classmethod
    def from_dict(cls, raw: JsonObject) -> ModelEntry:
        runs = [RunRecord.from_dict(r) for r in raw["runs"]]
        return cls(raw["label"], raw["short"], raw["family"], list(raw["overrides"]), runs)


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
    references: dict[str, dict[str, ReferenceRow]] = field(default_factory=dict)
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

    def run(self, model: str, seed: int) -> RunRecord | None:
        """The run of `model` at training seed `seed`, None when there is none."""
        entry = self.models.get(model)
        return None if entry is None else entry.runs_by_seed.get(seed)

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
            "references": {
                split: {name: row.to_dict() for name, row in rows.items()}
                for split, rows in self.references.items()
            },
            "notes": list(self.notes),
            "complete": self.complete,
        }
        if self.total_seconds is not None:
            out["total_seconds"] = self.total_seconds
        return out

    @classmethod
    def from_dict(cls, raw: JsonObject) -> Comparison:
        """The record of a comparison.json object; the sections the analysis adds (summary,
        readings, operating points, targets, gate) are derived from it again, not read."""
        references = {
            split: {name: ReferenceRow.from_dict(row) for name, row in rows.items()}
            for split, rows in raw["references"].items()
        }
        return cls(
            **{name: raw[name] for name in _SETUP_FIELDS},
            models={name: ModelEntry.from_dict(m) for name, m in raw["models"].items()},
            bayes={split: dict(row) for split, row in raw["bayes"].items()},
            references=references,
            complete=raw["complete"],
            total_seconds=raw.get("total_seconds"),
        )


_SETUP_FIELDS = (
    "command",
    "setup",
    "config",
    "world_seed",
    "seeds",
    "splits",
    "steps",
    "global_batch",
    "nproc",
    "notes",
)


def json_safe(obj: Any) -> Any:
    """NaN as null, +-inf as "inf"/"-inf" (strict JSON), numpy scalars as floats."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    value = float(obj)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value if math.isfinite(value) else None
