"""Catalogue encoding: KJTs from Parquet columns, batching, and matched calls across ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dmmp_rec.config import DmmpConfig, config_from_dict
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.inference.catalogue_vectors import encode_items, encode_users
from dmmp_rec.model import build_model


def _config() -> DmmpConfig:
    return config_from_dict(
        {
            "features": {
                "user": [
                    {"name": "user_id", "cardinality": 40, "dim": 8},
                    {
                        "name": "user_hist",
                        "cardinality": 30,
                        "dim": 8,
                        "multi_valued": True,
                        "pooling": "mean",
                    },
                ],
                "item": [
                    {"name": "item_id", "cardinality": 30, "dim": 8},
                    {"name": "item_cat", "cardinality": 5, "dim": 4, "out_of_range": "error"},
                ],
                "context": [{"name": "hour", "cardinality": 24, "dim": 4}],
            },
            "model": {
                "teacher": {"expert_dims": [8], "tower_dims": [4]},
                "student": {"tower_dims": [16], "out_dim": 8, "gate_dims": [8]},
            },
        }
    )


def _items(n: int = 30) -> pa.Table:
    ids = np.arange(n)
    return pa.table({"item_id": ids, "item_cat": ids % 5})


def _users(n: int = 23) -> pa.Table:
    rng = np.random.default_rng(0)
    hist = [rng.integers(0, 30, size=rng.integers(0, 4)).tolist() for _ in range(n)]
    return pa.table(
        {
            "user_id": np.arange(n),
            "user_hist": pa.array(hist, pa.list_(pa.int64())),
            "hour": [20] * n,
        }
    )


def test_table_kjt_keeps_lists_and_folds_out_of_range_ids() -> None:
    cfg = _config()
    users = pa.table(
        {
            "user_id": [0, 41, 3],  # 41 is outside [0, 40): folded by the stable hash
            "user_hist": pa.array([[1, 2], [], [5]], pa.list_(pa.int64())),
            "hour": [1, 2, 3],
        }
    )
    specs = cfg.features.group("user") + cfg.features.group("context")
    kjt = table_kjt(users, specs, "users.parquet")
    assert kjt.keys() == ["user_id", "user_hist", "hour"]
    assert kjt["user_hist"].lengths().tolist() == [2, 0, 1]
    assert kjt["user_hist"].values().tolist() == [1, 2, 5]
    ids = kjt["user_id"].values().tolist()
    assert ids[0] == 0 and ids[2] == 3 and 0 <= ids[1] < 40 and ids[1] != 41


def test_table_kjt_errors_name_the_file_and_column() -> None:
    cfg = _config()
    bad = pa.table({"item_id": [0, 1], "item_cat": [1, 9]})  # item_cat: out_of_range error
    with pytest.raises(ValueError, match=r"items.parquet.*'item_cat'.*id 9"):
        table_kjt(bad, cfg.features.group("item"), "items.parquet")
    with pytest.raises(ValueError, match=r"items.parquet: feature column 'item_cat' is missing"):
        table_kjt(pa.table({"item_id": [0]}), cfg.features.group("item"), "items.parquet")
    nulls = pa.table({"item_id": pa.array([0, None], pa.int64()), "item_cat": [1, 2]})
    with pytest.raises(ValueError, match=r"row 1: column 'item_id': null"):
        table_kjt(nulls, cfg.features.group("item"), "items.parquet")


@pytest.mark.parametrize("batch_size", [1, 7, 4096])
def test_encoding_in_batches_equals_one_call(batch_size: int) -> None:
    cfg = _config()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    items, users = _items(), _users()
    got = encode_items(model, cfg.features, items, batch_size)
    specs_u = cfg.features.group("user") + cfg.features.group("context")
    with torch.no_grad():
        want = model.item_vector(table_kjt(items, cfg.features.group("item"))).numpy()
        want_q = model.query_vector(table_kjt(users, specs_u)).numpy()
        want_g = model.user_gate(table_kjt(users, specs_u)).numpy()
    assert got.shape == (30, model.vector_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    q, g = encode_users(model, cfg.features, users, batch_size)
    np.testing.assert_allclose(q, want_q, atol=1e-5)
    np.testing.assert_allclose(g, want_g, atol=1e-6)
    np.testing.assert_allclose(g.sum(1), 1.0, atol=1e-6)
    # the inner product of the two sides is the fused score: a real ranking, not a constant
    assert np.ptp(q @ got.T) > 0


class _CountingModel:
    """Stands in for dmp.module: counts item_vector calls (each would be a collective)."""

    def __init__(self) -> None:
        self.calls = 0

    def item_vector(self, kjt):  # noqa: ANN001, ANN202
        self.calls += 1
        ids = kjt["item_id"].values().float()
        return torch.stack([ids, 10 * ids], dim=1)


CASES = [(7, 2), (1, 3)]  # (rows, batch size)


def _rank_main(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = _config()
        for n, batch_size in CASES:
            model = _CountingModel()
            vectors = encode_items(model, cfg.features, _items(n), batch_size)  # type: ignore[arg-type]
            calls = [None] * world
            dist.all_gather_object(calls, model.calls)
            np.savez(f"{out}/n{n}_rank{rank}.npz", vectors=vectors, calls=np.array(calls))
    finally:
        dist.destroy_process_group()


def test_two_ranks_make_equal_calls_and_gather_every_row_in_order(tmp_path: Path) -> None:
    """7 rows on 2 ranks: shares of 3 and 4 rows, so rank 0 pads a call; 1 row: rank 0 has no
    rows at all and still calls as often as rank 1. (fork: the children need no re-import.)"""
    mp.start_processes(
        _rank_main,
        args=(2, str(tmp_path / "store"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    for n, batch_size in CASES:
        want = np.stack([np.arange(n), 10 * np.arange(n)], axis=1)
        for rank in range(2):
            got = np.load(tmp_path / f"n{n}_rank{rank}.npz")
            np.testing.assert_array_equal(got["vectors"], want)
            calls = got["calls"].tolist()
            assert calls[0] == calls[1] == -(-((n + 1) // 2) // batch_size)
