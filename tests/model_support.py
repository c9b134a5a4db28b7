"""Shared by the model tests: a small config, a model and random batches of it."""

from __future__ import annotations

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import DmmpConfig, config_from_dict
from dmmp_rec.data.batch import Batch
from dmmp_rec.model import DMMPModel, build_model

B = 32
VARIANTS = ["dmmp", "two_tower", "no_distill", "no_gate"]
TEACHERS = ["ple", "mmoe", "shared_bottom"]
USER_KEYS = ["user_id", "user_hist"]
ITEM_KEYS = ["item_id", "item_cat"]
CONTEXT_KEYS = ["hour"]


def _config(**model: object) -> DmmpConfig:
    raw_model = {
        "teacher": {"expert_dims": [16], "tower_dims": [8], "num_levels": 2},
        "student": {"tower_dims": [16], "out_dim": 8, "gate_dims": [8]},
        "loss": {"distill_warmup_steps": 0, "distill_ramp_steps": 0},
    }
    for key, value in model.items():
        if isinstance(value, dict):
            raw_model.setdefault(key, {}).update(value)  # type: ignore[union-attr]
        else:
            raw_model[key] = value
    return config_from_dict(
        {
            "features": {
                "user": [
                    {"name": "user_id", "cardinality": 50, "dim": 8},
                    {
                        "name": "user_hist",
                        "cardinality": 60,
                        "dim": 8,
                        "multi_valued": True,
                        "pooling": "mean",
                    },
                ],
                "item": [
                    {"name": "item_id", "cardinality": 60, "dim": 8},
                    {"name": "item_cat", "cardinality": 6, "dim": 4},
                ],
                "context": [{"name": "hour", "cardinality": 24, "dim": 4}],
            },
            "model": raw_model,
        }
    )


def _model(seed: int = 0, **model: object) -> DMMPModel:
    torch.manual_seed(seed)
    return build_model(_config(**model))


def _batch(seed: int = 0, size: int = B) -> Batch:
    g = torch.Generator().manual_seed(seed)
    cards = {"user_id": 50, "user_hist": 60, "item_id": 60, "item_cat": 6, "hour": 24}
    lengths, values = [], []
    for key, card in cards.items():
        n = torch.randint(0, 4, (size,), generator=g) if key == "user_hist" else torch.ones(size)
        lengths.append(n.int())
        values.append(torch.randint(0, card, (int(n.sum()),), generator=g))
    kjt = KeyedJaggedTensor(keys=list(cards), values=torch.cat(values), lengths=torch.cat(lengths))
    click = (torch.rand(size, generator=g) < 0.4).float()
    conversion = click * (torch.rand(size, generator=g) < 0.5).float()
    return Batch(kjt, click, conversion)


def _subset(kjt: KeyedJaggedTensor, keys: list[str]) -> KeyedJaggedTensor:
    jts = kjt.to_dict()
    return KeyedJaggedTensor.from_jt_dict({k: jts[k] for k in keys})


def _replace(kjt: KeyedJaggedTensor, key: str, values: torch.Tensor) -> KeyedJaggedTensor:
    jts = kjt.to_dict()
    return KeyedJaggedTensor(
        keys=kjt.keys(),
        values=torch.cat([values if k == key else jts[k].values() for k in kjt.keys()]),
        lengths=kjt.lengths(),
    )
