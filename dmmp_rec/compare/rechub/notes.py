"""What differs between each torch-rechub peer and our models: one text per peer, for the report.

`PEER_COMMON` holds what every peer shares; `PEER_NOTES[name]` what that peer adds. Both are
templates filled from the config by `peer_notes` (widths, learning rates), so the text always
states the numbers the run used.
"""

from __future__ import annotations

from dmmp_rec.compare.rechub.recipes import DSSM_EXAMPLE, RANKER_EXAMPLE
from dmmp_rec.config.root import DmmpConfig

PEER_COMMON = (
    "torch-rechub 0.9.0 peers (every one): trained by its own `MTLTrainer` / `MatchTrainer` "
    "(`train_one_epoch`, its losses and optimiser step) on our Parquet rows in our seeded order, "
    "with our steps, batch ({batch} rows) and seed. Its `EmbeddingLayer` concatenates "
    "per-feature embeddings, so one width serves all {n_features} features (ours: {our_dims}, "
    "{our_total} floats in all); multi-valued features are padded `SequenceFeature`s, mean "
    "pooled over their real ids as our EBC pools them. Its MLP layers are Linear -> BatchNorm "
    "-> activation (ours: Linear -> ReLU). Its tables start at N(0, 1e-4) (ours: torchrec's "
    "uniform +-sqrt(1/rows)) and get dense gradients (every row is in every optimiser step). "
    "Each peer trains alone; our teachers train beside a student on shared tables."
)

_RANKER_DOC = (
    "documented recipe ({ranker_example}): Adam lr 1e-3, weight_decay 1e-4 (L2 on the "
    "gradient) on every parameter, tables included (ours: row-wise Adagrad lr {embedding_lr} on "
    "the tables, AdamW lr {dense_lr} weight_decay {weight_decay} on the rest)"
)
_OURS = (
    "our recipe: embedding width {dim} (the mean of ours), torchrec's RowWiseAdagrad lr "
    "{embedding_lr} on its tables and AdamW lr {dense_lr} weight_decay {weight_decay} on the "
    "rest, as our models"
)
_MTL_TASKS = (
    "Task 2 is CTCVR over all impressions, predicted directly (no pCTR x pCVR product; "
    "`MTLTrainer` has no per-task row mask for a CVR task on clicked rows); its CVR AUC ranks "
    "clicked rows by pCTCVR / pCTR. Loss: the mean of the CTR and CTCVR BCEs (ours: "
    "uncertainty weighting)."
)
_ESMM = (
    "No shared bottom (torch-rechub's ESMM is two towers straight over the embeddings; ours "
    "share an extractor {expert_dims} under towers {tower_dims}). Loss: BCE(pCTR, click) + "
    "BCE(pCTCVR, click x conversion), equal weights (ours: uncertainty weighting)."
)

_DSSM = (
    "`MatchTrainer(mode=0, in_batch_neg=True)`: each step, the clicked rows of our {batch}-row "
    "batch are the positives (`rows_in_loss` in its training summary counts them), each scored "
    "against the other clicked rows' items by softmax cross-entropy, no log-q correction, a "
    "repeated item not masked (our two-tower: BCE on all {batch} impressions plus a softmax of "
    "each clicked row's item over all {batch} batch items, log-q corrected, repeats masked, "
    "learned tau from {tau}). Not stock: `TemperedDSSM` (rechub/dssm.py) ends each tower in a "
    "plain Linear (stock 0.9.0 puts BatchNorm and the activation on the vector, so with ReLU "
    "every score was >= 0) and divides the user vector by the temperature (stock's forward and "
    "its in-batch logits ignore it); L2 normalisation as stock. One vector per side: no gate."
)

PEER_NOTES: dict[str, str] = {
    "rechub_esmm": "torch-rechub ESMM, "
    + _RANKER_DOC
    + "; embedding width 16; towers [16, 8]. "
    + _ESMM,
    "rechub_esmm_adagrad": "torch-rechub ESMM, " + _OURS + "; each tower {esmm_dims}. " + _ESMM,
    "rechub_mmoe": "torch-rechub MMoE, "
    + _RANKER_DOC
    + "; embedding width 4; 8 experts [16], towers [8] (our MMoE: {n_mmoe} experts "
    "{expert_dims}, towers {tower_dims}). " + _MTL_TASKS,
    "rechub_mmoe_adagrad": "torch-rechub MMoE, "
    + _OURS
    + "; {n_mmoe} experts {expert_dims}, towers {tower_dims} (our MMoE's). "
    + _MTL_TASKS,
    "rechub_ple": "torch-rechub PLE, "
    + _RANKER_DOC
    + "; embedding width 4; one level, 2 task-specific and 1 shared expert [16], towers [8] "
    "(ours: {levels} level(s), {task_experts} task-specific and {shared_experts} shared experts "
    "{expert_dims}, towers {tower_dims}). " + _MTL_TASKS,
    "rechub_ple_adagrad": "torch-rechub PLE, "
    + _OURS
    + "; {levels} level(s), {task_experts} task-specific and {shared_experts} shared experts "
    "{expert_dims}, towers {tower_dims} (ours). " + _MTL_TASKS,
    "rechub_dssm": "torch-rechub DSSM, documented recipe ({dssm_example}): embedding width 16, "
    "towers [256, 128] with PReLU then a linear layer to 64 (the example's [256, 128, 64]), "
    "temperature 0.02 fixed, Adam lr 1e-4, weight_decay 1e-6 on every parameter (ours: "
    "row-wise Adagrad lr {embedding_lr} on the tables, AdamW lr {dense_lr} on the rest). " + _DSSM,
    "rechub_dssm_adagrad": "torch-rechub DSSM, "
    + _OURS
    + "; towers {student_dims} with ReLU then a linear layer to {out_dim} (our two-tower's "
    "widths), temperature {tau} fixed (our tau's starting value). " + _DSSM,
}


def note_values(cfg: DmmpConfig) -> dict[str, object]:
    """The numbers the notes state, from the config."""
    from dmmp_rec.compare.rechub.models import uniform_dim

    t, s, tr = cfg.model.teacher, cfg.model.student, cfg.train
    dims = [f.dim for f in cfg.features.all]
    return {
        "batch": cfg.data.batch_size,
        "n_features": len(dims),
        "our_dims": f"{min(dims)}-{max(dims)}",
        "our_total": sum(dims),
        "dim": uniform_dim(cfg),
        "embedding_lr": tr.embedding_lr,
        "dense_lr": tr.dense_lr,
        "weight_decay": tr.weight_decay,
        "expert_dims": list(t.expert_dims),
        "tower_dims": list(t.tower_dims),
        "esmm_dims": list(t.expert_dims) + list(t.tower_dims),
        "n_mmoe": t.shared_experts + 2 * t.task_experts,
        "levels": t.num_levels,
        "task_experts": t.task_experts,
        "shared_experts": t.shared_experts,
        "student_dims": list(s.tower_dims),
        "out_dim": s.out_dim,
        "tau": s.tau,
        "ranker_example": RANKER_EXAMPLE,
        "dssm_example": DSSM_EXAMPLE,
    }


def peer_notes(names: list[str], cfg: DmmpConfig) -> list[str]:
    """The common note, then one note per peer in `names` (names without a note are skipped)."""
    values = note_values(cfg)
    notes = [PEER_COMMON.format(**values)]
    notes += [PEER_NOTES[n].format(**values) for n in names if n in PEER_NOTES]
    return notes
