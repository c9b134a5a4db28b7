"""DMMP: the shared sparse layer, the multi-task teacher, the three-tower student, the losses and
their weighting; `build_model` picks DMMP or a baseline from the config."""

from dmmp_rec.config.model import LOSS_TERMS
from dmmp_rec.model.dmmp import DenseArch, DMMPModel
from dmmp_rec.model.factory import build_model

__all__ = ["LOSS_TERMS", "DMMPModel", "DenseArch", "build_model"]
