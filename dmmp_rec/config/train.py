"""Optimisation, checkpointing and logging of a training job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dmmp_rec.config.base import require

# What validation measures during training (dmmp_rec.train.validation), all higher-is-better:
# the teacher's AUCs (CVR on clicked rows, ESMM's convention) and the student's scores' AUCs.
VALIDATION_METRICS = (
    "val/teacher_ctr_auc",
    "val/teacher_cvr_auc",
    "val/teacher_ctcvr_auc",
    "val/student_ctr_auc",
    "val/student_ctcvr_auc",
    "val/student_fused_ctcvr_auc",
)


@dataclass
class TrainConfig:
    max_steps: int = 1000
    # passes over the training days; training stops at whichever of max_steps and this comes
    # first (its steps depend on the job's global batch, so 1 and 2 processes train alike)
    max_epochs: float | None = None
    # Seed of the model's initialisation and the training rows' order; null: the top-level
    # `seed` (which also generates the synthetic world). Several training seeds on one fixed
    # world is how `dmmp-rec compare --seeds N` measures run-to-run spread.
    seed: int | None = None
    dense_lr: float = 1e-3  # AdamW on towers, experts, gates and loss weights
    embedding_lr: float = 0.05  # fused row-wise Adagrad on the embedding tables
    weight_decay: float = 0.0
    out: str = "runs/synthetic"  # checkpoints, TensorBoard logs and the summary
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    eval_every: int = 0  # 0: validate only at the end
    # validation batches per rank: null = the whole validation day, 0 = no validation
    eval_batches: int | None = None
    # keep the checkpoint of the validation with the best value of this metric (higher is
    # better); eval / export then load it. null: the last checkpoint. Needs eval_every > 0.
    select_best_on: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Arithmetic of the dense part (teacher, student, their MLPs) in training: fp32, or bf16
    # autocast (the losses and the embedding tables stay fp32). On CUDA both enable TF32 for
    # fp32 matmuls. Evaluation and export always score in fp32.
    precision: Literal["fp32", "bf16"] = "fp32"
    # How long a rank waits on its peers (joining the process group, any collective) before it
    # fails; the elastic agent then restarts the workers (max_restarts). torch's default is 30 min.
    dist_timeout_s: float = 1800.0
    # Fault injection for the elastic-recovery test: rank 1 kills itself (SIGKILL) after this
    # step on the job's first attempt only. null in every real config.
    fault_at_step: int | None = None
    # Fault injection for `make gpu-check`'s own test: after this step the dense parameters are
    # set to NaN, as a diverged run would have them, so every later loss is NaN. null in every
    # real config.
    nan_at_step: int | None = None

    def validate(self, path: str) -> None:
        if self.seed is not None:
            require(self.seed >= 0, f"{path}.seed", f"must be >= 0 or null, got {self.seed}")
        for name in ("max_steps", "checkpoint_every", "keep_checkpoints", "log_every"):
            require(
                getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}"
            )
        if self.max_epochs is not None:
            require(
                self.max_epochs > 0, f"{path}.max_epochs", f"must be > 0, got {self.max_epochs}"
            )
        for name in ("eval_every", "eval_batches"):
            value = getattr(self, name)
            require(value is None or value >= 0, f"{path}.{name}", f"must be >= 0, got {value}")
        if self.select_best_on is not None:
            require(
                self.select_best_on in VALIDATION_METRICS,
                f"{path}.select_best_on",
                f"unknown metric {self.select_best_on!r}; known: {', '.join(VALIDATION_METRICS)}",
            )
            require(
                self.eval_every > 0 and self.eval_batches != 0,
                f"{path}.select_best_on",
                "needs periodic validation: set train.eval_every > 0 (and eval_batches != 0)",
            )
        for name in ("dense_lr", "embedding_lr", "dist_timeout_s"):
            require(
                getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}"
            )
