"""DMMP: the shared sparse layer, the multi-task teacher, the three-tower student, the losses and
their weighting; `build_model` picks DMMP or a baseline from the config."""

from dmmp_rec.config.model import LOSS_TERMS
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.factory import build_model
from dmmp_rec.model.objective import DenseArch
from dmmp_rec.model.output import DMMPOutput, TrainOutput

__all__ = ["LOSS_TERMS", "DMMPModel", "DMMPOutput", "DenseArch", "TrainOutput", "build_model"]
