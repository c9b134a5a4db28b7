"""dmmp-rec: DMMP (distillation-based multi-task multi-tower) retrieval on TorchRec."""

__version__ = "0.1.0"
