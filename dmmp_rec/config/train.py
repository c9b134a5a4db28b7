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
    """Optimisation, checkpointing, validation and devices of a training job (`train:`).

    Args:
        max_steps (int): training steps, > 0; default 1000.
        max_epochs (float | None): passes over the training days, > 0; training stops at
            whichever of max_steps and this comes first (its steps depend on the job's global
            batch, so 1 and 2 processes train alike). Default null: max_steps alone.
        seed (int | None): seed of the model's initialisation and the training rows' order,
            >= 0; null (default): the top-level `seed`. Several training seeds on one fixed world
            is how `dmmp-rec compare --seeds N` measures run-to-run spread.
        dense_lr (float): AdamW's learning rate on towers, experts, gates and loss weights,
            > 0; default 1e-3.
        embedding_lr (float): fused row-wise Adagrad's learning rate on the tables, > 0;
            default 0.05.
        weight_decay (float): AdamW's weight decay; default 0.
        out (str): run directory for checkpoints, TensorBoard logs and the summary; default
            "runs/synthetic".
        checkpoint_every (int): steps between checkpoints, > 0; default 500.
        keep_checkpoints (int): newest checkpoints kept (plus the best), > 0; default 2.
        log_every (int): steps between log lines, > 0; default 50.
        eval_every (int): steps between validations, >= 0; 0 (default): only at the end.
        eval_batches (int | None): validation batches per rank, >= 0; null (default): the
            whole validation day; 0: no validation.
        select_best_on (str | None): keep the checkpoint of the validation with the best
            value of this metric (one of VALIDATION_METRICS, higher is better); eval / export
            then load it. Needs eval_every > 0 and eval_batches != 0. Default null: the last
            checkpoint.
        device (str): "auto" (default: the local GPU when usable, the CPU on a host without
            one), "cpu" or "cuda".
        precision (str): arithmetic of the dense part in training: "fp32" (default) or "bf16"
            autocast (losses and tables stay fp32; needs compute capability >= 8.0 on CUDA). On
            CUDA both enable TF32 for fp32 matmuls. Evaluation and export score in fp32.
        dist_timeout_s (float): seconds a rank waits on its peers (joining, any collective)
            before it fails and the elastic agent restarts the workers, > 0; default 1800.
        fault_at_step (int | None): fault injection for the elastic-recovery test: rank 1
            kills itself (SIGKILL) after this step on the job's first attempt only. Null
            (default) in every real config.
        nan_at_step (int | None): fault injection for `make gpu-check`'s own test: after this
            step the dense parameters are set to NaN, as a diverged run would have them. Null
            (default) in every real config.
    """

    max_steps: int = 1000
    max_epochs: float | None = None
    seed: int | None = None
    dense_lr: float = 1e-3
    embedding_lr: float = 0.05
    weight_decay: float = 0.0
    out: str = "runs/synthetic"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    eval_every: int = 0
    eval_batches: int | None = None
    select_best_on: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    dist_timeout_s: float = 1800.0
    fault_at_step: int | None = None
    nan_at_step: int | None = None

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
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
