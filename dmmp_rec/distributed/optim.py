"""Optimisers: fused row-wise Adagrad in backward for the tables, AdamW for the dense part.

The tables' optimiser is attached before DistributedModelParallel so that the sharder fuses it
into the embedding kernels (no embedding gradients are ever materialised). Tables that the plan
makes data_parallel get the dense kernel; their parameters come out of DMP without the
in-backward marker and so land in the dense AdamW, as torchrec intends.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from dmmp_rec.config.train import TrainConfig


def attach_embedding_optimizer(embedding_module: nn.Module, train: TrainConfig) -> None:
    """Mark the embedding tables for a fused row-wise Adagrad applied during backward.

    Call it before DistributedModelParallel, so that the sharder fuses it into the kernels.

    Args:
        embedding_module (nn.Module): the module holding the tables (the EBC).
        train (TrainConfig): the train section; its embedding_lr is Adagrad's learning rate.
    """
    apply_optimizer_in_backward(
        RowWiseAdagrad, embedding_module.parameters(), {"lr": train.embedding_lr}
    )


def dense_optimizer(model: nn.Module, train: TrainConfig) -> KeyedOptimizerWrapper:
    """Fused AdamW over every parameter not optimised in backward (the dense part).

    Args:
        model (nn.Module): the DMP-wrapped model.
        train (TrainConfig): the train section (dense_lr, weight_decay).

    Returns:
        KeyedOptimizerWrapper: the AdamW, keyed by parameter name.
    """
    params = dict(in_backward_optimizer_filter(model.named_parameters()))
    return KeyedOptimizerWrapper(
        params,
        # fused: one kernel over all tensors (~4x faster than foreach on CPU, same update)
        lambda ps: torch.optim.AdamW(
            ps, lr=train.dense_lr, weight_decay=train.weight_decay, fused=True
        ),
    )


def combined_optimizer(
    dmp: nn.Module, train: TrainConfig
) -> tuple[CombinedOptimizer, KeyedOptimizerWrapper]:
    """The optimiser the train pipeline steps, and its dense part (for init_state on resume).

    Args:
        dmp (nn.Module): the DistributedModelParallel model (its fused_optimizer is the tables').
        train (TrainConfig): the train section (dense_lr, weight_decay).

    Returns:
        tuple[CombinedOptimizer, KeyedOptimizerWrapper]: "sparse" + "dense" combined, and the
        dense one alone.
    """
    dense = dense_optimizer(dmp, train)
    return CombinedOptimizer([("sparse", dmp.fused_optimizer), ("dense", dense)]), dense
