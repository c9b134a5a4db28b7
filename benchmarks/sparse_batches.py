"""Batches for the embedding-heavy benchmark (configs/bench_sparse.yaml), drawn in memory.

That workload exists to load the tables: tens of millions of rows and ~50-id histories. The
synthetic world caps histories at 20 ids and would take hours to generate at this size, and a
throughput benchmark needs no ground truth, so each rank draws its batches directly: every id
from a Zipf popularity law (the synthetic world's exponents: users 0.8, items 0.9) scattered
over its table by a fixed bijection, history lengths uniform in [L/2, 3L/2], click and
conversion at Ali-CCP-like rates. Same seed, rank and sizes give the same batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import DmmpConfig
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.synthetic.entities import ITEM_POPULARITY_ZIPF, USER_ACTIVITY_ZIPF

CTR, CVR = 0.04, 0.03
SCATTER = 2_654_435_761  # Knuth's multiplicative constant: a bijection mod a coprime size


def zipf_ids(rng: np.random.Generator, n: int, size: int, exponent: float) -> np.ndarray:
    """`size` ids in [0, n) with P(rank k) ~ k^-exponent (inverse-CDF of the continuous law),
    ranks scattered over the table so hot rows are not adjacent."""
    u = rng.random(size)
    a = 1.0 - exponent
    rank = np.floor(((n**a - 1.0) * u + 1.0) ** (1.0 / a)).astype(np.int64) - 1
    rank = np.clip(rank, 0, n - 1)
    mult = SCATTER if np.gcd(SCATTER, n) == 1 else 1
    return (rank * mult) % n


def _exponent(spec: FeatureSpec) -> float:
    return USER_ACTIVITY_ZIPF if spec.name.startswith("user_id") else ITEM_POPULARITY_ZIPF


def random_batches(
    cfg: DmmpConfig, count: int, hist_len: int, rank: int = 0, seed: int = 0
) -> list[Batch]:
    """`count` batches of `cfg.data.batch_size` rows for this rank."""
    if hist_len < 2:
        raise ValueError(f"hist_len must be >= 2, got {hist_len}")
    rng = np.random.default_rng([seed, rank])
    size = cfg.data.batch_size
    out = []
    for _ in range(count):
        lengths, values = [], []
        for spec in cfg.features.all:
            if spec.multi_valued:
                n = rng.integers(hist_len // 2, hist_len + hist_len // 2 + 1, size)
            else:
                n = np.ones(size, np.int64)
            lengths.append(torch.from_numpy(n.astype(np.int32)))
            ids = zipf_ids(rng, spec.cardinality, int(n.sum()), _exponent(spec))
            values.append(torch.from_numpy(ids))
        kjt = KeyedJaggedTensor(
            keys=cfg.features.names, values=torch.cat(values), lengths=torch.cat(lengths)
        )
        click = torch.from_numpy((rng.random(size) < CTR).astype(np.float32))
        conversion = click * torch.from_numpy((rng.random(size) < CVR).astype(np.float32))
        out.append(Batch(kjt, click, conversion))
    return out
