"""How each torch-rechub peer is built and trained: its documented recipe, or ours.

A documented recipe is what torch-rechub's own examples and tutorials use for that model on the
closest task they ship (widths, embedding width, optimiser, learning rate, weight decay):
- rankers: `examples/ranking/run_ali_ccp_multi_task.py` (Ali-CCP: click + purchase, the CTR/CVR
  task of this comparison): Adam lr 1e-3, weight_decay 1e-4; ESMM embed_dim 16 with towers
  [16, 8]; MMoE and PLE embed_dim 4, experts [16], towers [8], MMoE 8 experts, PLE one level
  with 2 task-specific and 1 shared expert. The MMoE tutorial and docs/en/models/mtl.md use the
  same optimiser settings.
- DSSM: `examples/matching/run_ml_dssm.py` and the DSSM tutorial: embed_dim 16, towers
  [256, 128, 64] with PReLU ("important!!" in the example), temperature 0.02, Adam lr 1e-4,
  weight_decay 1e-6; trained with `MatchTrainer(mode=0, in_batch_neg=True)`, the in-batch mode
  its tutorial offers (cross-entropy of each positive against the other rows' items), with the
  trainer's default `in_batch_neg_ratio` (every other row of the batch).
Our recipe (`*_adagrad`) is what our models get: row-wise Adagrad at `train.embedding_lr` on the
embedding tables (torchrec's `RowWiseAdagrad`), AdamW at `train.dense_lr` with
`train.weight_decay` on the rest, our MLP widths and the mean of our embedding widths.
Nothing here was chosen from test-day numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RechubKind = Literal["esmm", "mmoe", "ple", "dssm"]
RECHUB_KINDS: tuple[RechubKind, ...] = ("esmm", "mmoe", "ple", "dssm")
Widths = Literal["documented", "ours"]
OptimizerKind = Literal["adam", "rowwise_adagrad"]

RANKER_EXAMPLE = "torch-rechub examples/ranking/run_ali_ccp_multi_task.py"
DSSM_EXAMPLE = "torch-rechub examples/matching/run_ml_dssm.py and its DSSM tutorial"

# The documented architectures (widths of the MLPs; `dims` as torch-rechub's MLP takes them).
DOC_ESMM_TOWER = [16, 8]
DOC_MMOE: dict[str, Any] = {"n_expert": 8, "expert_dims": [16], "tower_dims": [8]}
DOC_PLE: dict[str, Any] = {
    "n_level": 1,
    "n_specific": 2,
    "n_shared": 1,
    "expert_dims": [16],
    "tower_dims": [8],
}
# DSSM: the example's towers [256, 128, 64]; the last (64) is the vector, here a plain Linear.
DOC_DSSM: dict[str, Any] = {"hidden_dims": [256, 128], "out_dim": 64, "activation": "prelu"}


@dataclass(frozen=True)
class RechubRecipe:
    name: str  # the comparison's model name and run directory
    kind: RechubKind
    widths: Widths
    embed_dim: int | None  # None: the mean of our feature widths (`uniform_dim`)
    optimizer: OptimizerKind
    lr: float | None  # None: `train.dense_lr`
    weight_decay: float | None  # None: `train.weight_decay`
    temperature: float | None = None  # DSSM only; None: `model.student.tau` (our initial tau)
    source: str = "ours"


def _documented_ranker(kind: RechubKind, embed_dim: int) -> RechubRecipe:
    return RechubRecipe(
        f"rechub_{kind}", kind, "documented", embed_dim, "adam", 1e-3, 1e-4, source=RANKER_EXAMPLE
    )


def _ours(kind: RechubKind) -> RechubRecipe:
    return RechubRecipe(f"rechub_{kind}_adagrad", kind, "ours", None, "rowwise_adagrad", None, None)


RECIPES: dict[str, RechubRecipe] = {
    r.name: r
    for r in (
        _documented_ranker("esmm", 16),
        _ours("esmm"),
        _documented_ranker("mmoe", 4),
        _ours("mmoe"),
        _documented_ranker("ple", 4),
        _ours("ple"),
        RechubRecipe(
            "rechub_dssm", "dssm", "documented", 16, "adam", 1e-4, 1e-6, 0.02, DSSM_EXAMPLE
        ),
        _ours("dssm"),
    )
}


def recipe(name: str) -> RechubRecipe:
    """The recipe called `name` (a comparison model name); unknown names raise naming the known."""
    if name not in RECIPES:
        raise ValueError(f"unknown torch-rechub recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]
