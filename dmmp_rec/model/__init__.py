"""DMMP as torch modules: the shared sparse layer, the teacher, the student, the losses and their
weighting; `build_model` picks DMMP or a baseline from the config.

- `sparse`: the one EmbeddingBagCollection every feature's table lives in, pooled per group;
  `managed_ids`: torchrec managed collisions for raw 64-bit ids, ahead of it.
- `teacher`: the multi-task ranker (CTR and CVR towers, entire-space probabilities) over an
  extractor of `experts` (PLE / CGC, MMoE, shared bottom); `mlp`: the layer stack of both.
- `student`: the user, click-item and conversion-item towers and the per-user gate, and the
  retrieval query at the serving knob beta.
- `scoring` (`DenseScorer`: scores only) and `objective` (`DenseArch`: the training step's
  objective), with `candidates` (the teacher ranking in-batch candidates), `losses`,
  `gate_targets` (the gate's own target) and `weighting` (how the terms are combined, on
  `weighting_base`: the distillation warm-up and the rank reducer).
- `dmmp` (`DMMPModel`: sparse layer + dense arch), `factory` (`build_model`), `output`
  (`DMMPOutput`, `TrainOutput`), `precision` (bf16 autocast, TF32).
"""

from dmmp_rec.config.model import LOSS_TERMS
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.factory import build_model
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.output import DMMPOutput, TrainOutput

__all__ = ["LOSS_TERMS", "DMMPModel", "DMMPOutput", "DenseArch", "TrainOutput", "build_model"]
