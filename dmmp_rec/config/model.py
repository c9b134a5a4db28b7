"""Teacher, student and loss-weighting settings; baselines are named variants of one model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dmmp_rec.config.base import require

# Every loss term a model can have, as named in outputs (`loss/<term>`, `weight/<term>`) and in
# `model.loss.fixed_weights`. A variant uses a subset (dmmp_rec.model.losses.terms_for).
TEACHER_TERMS = ("teacher/ctr", "teacher/ctcvr")
STUDENT_TERMS = ("student/ctr", "student/ctcvr", "student/fused", "student/inbatch")
# distill/ctcvr_rank is the listwise term over in-batch candidates (distill_candidates > 0):
# its own weight, since its scale (~1) is a thousand times the pointwise distill/ctcvr's.
# distill/gate: the gate supervised by the teacher's pCVR (student.gate_training: teacher_cvr,
# dmmp_rec.model.gate_targets).
DISTILL_TERMS = (
    "distill/ctr",
    "distill/ctcvr",
    "distill/ctcvr_rank",
    "distill/fused",
    "distill/gate",
)
LOSS_TERMS = TEACHER_TERMS + STUDENT_TERMS + DISTILL_TERMS
DISTILLING_VARIANTS = ("dmmp", "no_gate")  # the variants whose student learns from the teacher


def _positive_dims(dims: list[int], path: str) -> None:
    for i, d in enumerate(dims):
        require(d > 0, f"{path}.{i}", f"layer width must be > 0, got {d}")


@dataclass
class TeacherConfig:
    """Multi-task ranker: PLE/CGC by default; MMoE and shared-bottom ESMM as baselines (`teacher:`).

    Args:
        kind (str): "ple" (default), "mmoe" (shared_experts + 2 * task_experts experts, all
            shared) or "shared_bottom" (one MLP of expert_dims).
        num_levels (int): PLE extraction levels, >= 1; 1 is CGC. Default 1.
        shared_experts (int): experts shared by both tasks, >= 1; default 2.
        task_experts (int): experts of each task (CTR, CVR), >= 0; default 1.
        expert_dims (list[int]): each expert's layer widths, at least one, each > 0; the last
            is the extractor's output width. Default [128, 64].
        tower_dims (list[int]): hidden widths of the CTR and CVR towers above the extractor,
            each > 0 (empty: one linear layer); default [32].
    """

    kind: Literal["ple", "mmoe", "shared_bottom"] = "ple"
    num_levels: int = 1
    shared_experts: int = 2
    task_experts: int = 1
    expert_dims: list[int] = field(default_factory=lambda: [128, 64])
    tower_dims: list[int] = field(default_factory=lambda: [32])

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        require(self.num_levels >= 1, f"{path}.num_levels", f"must be >= 1, got {self.num_levels}")
        require(
            self.shared_experts >= 1,
            f"{path}.shared_experts",
            f"must be >= 1, got {self.shared_experts}",
        )
        require(
            self.task_experts >= 0, f"{path}.task_experts", f"must be >= 0, got {self.task_experts}"
        )
        require(len(self.expert_dims) > 0, f"{path}.expert_dims", "needs at least one layer")
        _positive_dims(self.expert_dims, f"{path}.expert_dims")
        _positive_dims(self.tower_dims, f"{path}.tower_dims")


@dataclass
class StudentConfig:
    """Three-tower retriever: user, click-item and conversion-item towers plus a user gate.

    The `student:` section.

    Args:
        tower_dims (list[int]): hidden widths of each tower, each > 0; default [128, 64].
        out_dim (int): d, the width of the L2-normalised tower vectors, > 0; default 32.
        tau (float): the score temperature (scores are cosines / tau), > 0; the initial value
            when learn_tau. Default 0.05.
        learn_tau (bool): learn tau (clamped at >= 0.01); default true.
        gate_dims (list[int]): hidden widths of the gate network over the user features, each
            > 0; default [32].
        in_batch_negatives (bool): also train the click tower with a softmax over the batch's
            items (log-q corrected) on clicked rows, so it sees items outside each user's
            impressions (docs/model.md); default true.
        gate_training (str): what trains the gate: "fused" (default; only the fused score's
            terms) or "teacher_cvr" (regressed on the teacher's pCVR, term distill/gate; the
            fused terms see it detached); dmmp_rec.model.gate_targets, docs/model.md.
    """

    tower_dims: list[int] = field(default_factory=lambda: [128, 64])
    out_dim: int = 32
    tau: float = 0.05
    learn_tau: bool = True
    gate_dims: list[int] = field(default_factory=lambda: [32])
    in_batch_negatives: bool = True
    gate_training: Literal["fused", "teacher_cvr"] = "fused"

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        require(
            self.gate_training in ("fused", "teacher_cvr"),
            f"{path}.gate_training",
            f"must be 'fused' or 'teacher_cvr', got {self.gate_training!r}",
        )
        require(self.out_dim > 0, f"{path}.out_dim", f"must be > 0, got {self.out_dim}")
        require(self.tau > 0, f"{path}.tau", f"must be > 0, got {self.tau}")
        _positive_dims(self.tower_dims, f"{path}.tower_dims")
        _positive_dims(self.gate_dims, f"{path}.gate_dims")


@dataclass
class LossConfig:
    """How the loss terms are combined, and the distillation settings (`loss:`).

    Args:
        weighting (str): "anchored" (default): Kendall's learnable weights with each
            regulariser scaled by a detached running estimate of its term's loss, so they
            settle near 1 and keep the raw terms' balance; "scaled": each term divided by that
            running scale before Kendall's weights; "uncertainty": Kendall et al.'s plain form;
            "fixed": constant `fixed_weights`; "dwa": dynamic weight average (docs/model.md).
        fixed_weights (dict[str, float]): term (one of LOSS_TERMS) -> weight >= 0, for
            weighting "fixed"; unnamed terms weigh 1. Default empty.
        distill_warmup_steps (int): distillation weights are multiplied by
            distill_warmup_start for this many first steps, >= 0; default 200.
        distill_warmup_start (float): that multiplier, in [0, 1]; default 0.
        distill_ramp_steps (int): then it ramps linearly to 1 over this many steps, >= 0;
            default 100.
        distill_temperature (float): T of every distillation term, > 0; default 1.
        distill_candidates (int): R, other in-batch items whose teacher ranking (with the
            row's own item) the conversion tower learns (distill/ctcvr_rank,
            dmmp_rec.model.candidates), >= 0; 0: off. Default 4.
        click_credit (float): c, the fused label of a click without conversion, in [0, 1];
            default 0.3.
        uncertainty_init (float): initial log-variance s_k of every term (anchored, scaled,
            uncertainty); default 0.
        scale_decay (float): anchored / scaled running scale c_k <- decay * c_k + (1 - decay)
            * L_k (rank mean), in (0, 1); 0.9 (about 10 steps, default) tracks a falling loss
            closely enough that the weights settle.
        distill_to_tables (bool): false: the distillation terms train the student towers only
            (computed again on detached embeddings), so no distillation gradient reaches the
            shared tables; default true.
        dwa_temperature (float): DWA's softmax temperature, > 0; default 2.
        dwa_window (int): DWA compares mean losses of consecutive windows of this many steps,
            > 0; default 50.
    """

    weighting: Literal["anchored", "scaled", "uncertainty", "fixed", "dwa"] = "anchored"
    fixed_weights: dict[str, float] = field(default_factory=dict)
    distill_warmup_steps: int = 200
    distill_warmup_start: float = 0.0
    distill_ramp_steps: int = 100
    distill_temperature: float = 1.0
    distill_candidates: int = 4
    click_credit: float = 0.3
    uncertainty_init: float = 0.0
    scale_decay: float = 0.9
    distill_to_tables: bool = True
    dwa_temperature: float = 2.0
    dwa_window: int = 50

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        require(
            self.distill_warmup_steps >= 0,
            f"{path}.distill_warmup_steps",
            f"must be >= 0, got {self.distill_warmup_steps}",
        )
        require(
            self.distill_temperature > 0,
            f"{path}.distill_temperature",
            f"must be > 0, got {self.distill_temperature}",
        )
        require(
            self.distill_candidates >= 0,
            f"{path}.distill_candidates",
            f"must be >= 0, got {self.distill_candidates}",
        )
        require(
            0.0 <= self.click_credit <= 1.0,
            f"{path}.click_credit",
            f"must be in [0, 1], got {self.click_credit}",
        )
        require(
            0.0 <= self.distill_warmup_start <= 1.0,
            f"{path}.distill_warmup_start",
            f"must be in [0, 1], got {self.distill_warmup_start}",
        )
        require(
            self.distill_ramp_steps >= 0,
            f"{path}.distill_ramp_steps",
            f"must be >= 0, got {self.distill_ramp_steps}",
        )
        require(
            self.dwa_temperature > 0,
            f"{path}.dwa_temperature",
            f"must be > 0, got {self.dwa_temperature}",
        )
        require(self.dwa_window > 0, f"{path}.dwa_window", f"must be > 0, got {self.dwa_window}")
        require(
            0.0 < self.scale_decay < 1.0,
            f"{path}.scale_decay",
            f"must be in (0, 1), got {self.scale_decay}",
        )
        for k, w in self.fixed_weights.items():
            require(
                k in LOSS_TERMS,
                f"{path}.fixed_weights.{k}",
                f"unknown loss term {k!r}; known: {', '.join(LOSS_TERMS)}",
            )
            require(w >= 0, f"{path}.fixed_weights.{k}", f"must be >= 0, got {w}")


@dataclass
class ModelConfig:
    """The `model:` section: `variant` picks DMMP or a baseline differing only as named.

    Args:
        variant (str): "dmmp" (default), "two_tower" (no conversion tower, no gate, no
            distillation), "no_distill" (no distillation terms) or "no_gate" (a fixed 0.5/0.5
            gate).
        teacher (TeacherConfig): the multi-task teacher.
        student (StudentConfig): the three-tower student.
        loss (LossConfig): loss weighting and distillation.
    """

    variant: Literal["dmmp", "two_tower", "no_distill", "no_gate"] = "dmmp"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
