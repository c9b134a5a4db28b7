"""ParquetBatchLoader: contents, rank shares, shuffle, resume, label and id validation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dmmp_rec.config import load_config
from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data import schema
from dmmp_rec.data.batch import Batch
from dmmp_rec.data.id_policy import hash_into
from dmmp_rec.data.loader import DataError, ParquetBatchLoader, loader_for_split

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
FILE_ROWS = (70, 53, 40)  # 163 rows; row groups of 32 rows leave uneven tails
ROW_GROUP = 32
N = sum(FILE_ROWS)


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def features(cfg) -> FeaturesConfig:
    return cfg.features


def _lists(uids: np.ndarray, mod_len: int, fn) -> list[list[int]]:
    return [[fn(u, j) for j in range(u % mod_len)] for u in uids.tolist()]


def _columns(uids: np.ndarray) -> dict[str, object]:
    """Every feature is a function of the row's uid (= its user_id), so rows can be checked."""
    return {
        "user_id": uids,
        "user_age": uids % 8,
        "user_gender": uids % 3,
        "user_city": uids % 64,
        "user_hist_items": _lists(uids, 4, lambda u, j: (u * 10 + j) % 50000),
        "user_hist_cats": _lists(uids, 3, lambda u, j: (u + j) % 64),
        "item_id": (uids * 7) % 50000,
        "item_category": uids % 64,
        "item_brand": uids % 2000,
        "item_price_bucket": uids % 10,
        "item_title_bucket": (uids + 1) % 10,
        "ctx_hour": uids % 24,
        "cross_hist_cat_hits": uids % 6,
        "cross_hist_brand_hits": uids % 3,
        "cross_hist_item": uids % 2,
        schema.CLICK: (uids % 5 == 0).astype(np.int8),
        schema.CONVERSION: (uids % 15 == 0).astype(np.int8),
        schema.DAY: np.zeros(len(uids), np.int32),
        schema.IS_RAND: np.zeros(len(uids), bool),
    }


def _write(path: Path, uids: np.ndarray, features, overrides=None, arrow_schema=None) -> Path:
    cols = _columns(uids)
    cols.update(overrides or {})
    table = pa.table(cols, schema=arrow_schema or schema.arrow_schema(features))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=ROW_GROUP)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, features) -> list[Path]:
    root = tmp_path_factory.mktemp("data")
    out, start = [], 0
    for i, rows in enumerate(FILE_ROWS):
        out.append(_write(root / f"part-{i:05d}.parquet", np.arange(start, start + rows), features))
        start += rows
    return out


def _uids(batches: list[Batch]) -> list[int]:
    return [u for b in batches for u in b.features["user_id"].values().tolist()]


def _all(loader, n: int | None = None) -> list[Batch]:
    return list(itertools.islice(iter(loader), n))


def _loader(files, features, **kw) -> ParquetBatchLoader:
    kw.setdefault("batch_size", 16)
    return ParquetBatchLoader(files, features, **kw)


def test_kjt_contents_equal_the_parquet_rows(files, features) -> None:
    loader = _loader(files, features, drop_last=False)
    batches = _all(loader)
    assert loader.epoch == 1 and loader.num_batches_per_epoch == len(batches) == 11
    uids = np.arange(N)
    expected = _columns(uids)
    for spec in features.all:
        values = np.concatenate([b.features[spec.name].values().numpy() for b in batches])
        lengths = np.concatenate([b.features[spec.name].lengths().numpy() for b in batches])
        if spec.multi_valued:
            rows = expected[spec.name]
            assert lengths.tolist() == [len(r) for r in rows], spec.name
            assert values.tolist() == [v for r in rows for v in r], spec.name
        else:
            assert lengths.tolist() == [1] * N and values.tolist() == expected[spec.name].tolist()
    b = batches[0]
    assert b.features.keys() == features.names
    assert b.click.dtype == b.conversion.dtype == torch.float32
    click = np.concatenate([b.click.numpy() for b in batches])
    conv = np.concatenate([b.conversion.numpy() for b in batches])
    assert click.tolist() == expected[schema.CLICK].tolist()
    assert conv.tolist() == expected[schema.CONVERSION].tolist()
    assert max(int(b.features["user_hist_items"].lengths().max()) for b in batches) == 3


@pytest.mark.parametrize("shuffle_buffer", [0, 40])
def test_two_ranks_without_drop_read_every_row_once(files, features, shuffle_buffer) -> None:
    loaders = [
        _loader(
            files,
            features,
            rank=r,
            world_size=2,
            shuffle_buffer=shuffle_buffer,
            seed=3,
            drop_last=False,
        )
        for r in range(2)
    ]
    per_rank = [_all(lo) for lo in loaders]
    assert len(per_rank[0]) == len(per_rank[1]) == loaders[0].num_batches_per_epoch == 6
    seen = [set(_uids(b)) for b in per_rank]
    assert not seen[0] & seen[1]
    assert sorted(_uids(per_rank[0]) + _uids(per_rank[1])) == list(range(N))
    assert all(b.size > 0 for batches in per_rank for b in batches)


def test_two_ranks_with_drop_last_step_together(files, features) -> None:
    loaders = [
        _loader(files, features, rank=r, world_size=2, shuffle_buffer=40, seed=3) for r in range(2)
    ]
    per_rank = [_all(lo) for lo in loaders]
    # 163 rows over 2 ranks: 81 each at least, 5 full batches of 16 per rank.
    assert [len(b) for b in per_rank] == [5, 5]
    assert all(b.size == 16 for batches in per_rank for b in batches)
    uids = _uids(per_rank[0]) + _uids(per_rank[1])
    assert len(set(uids)) == len(uids) == 160
    assert loaders[0].rows_dropped_per_epoch == N - 160


def test_shuffle_is_seeded_and_changes_with_seed_and_epoch(files, features) -> None:
    def order(seed: int, epochs: int = 1) -> list[list[int]]:
        loader = _loader(files, features, shuffle_buffer=40, seed=seed, drop_last=False)
        return [_uids(_all(loader)) for _ in range(epochs)]

    a0, a1 = order(5, epochs=2)
    assert order(5) == [a0]
    assert sorted(a0) == sorted(a1) == list(range(N))
    assert a0 != a1
    assert order(6)[0] != a0
    assert a0 != list(range(N))


def test_restore_mid_epoch_yields_exactly_the_rest(files, features) -> None:
    kw = dict(shuffle_buffer=40, seed=1, rank=1, world_size=2)
    reference = _uids(_all(_loader(files, features, **kw)))
    first = _loader(files, features, **kw)
    head = _uids(_all(first, 2))
    state = first.state_dict()
    assert state["batches"] == 2 and state["epoch"] == 0
    resumed = _loader(files, features, **kw)
    resumed.load_state_dict(state)
    assert head + _uids(_all(resumed)) == reference
    assert resumed.epoch == 1


def test_restore_across_an_epoch_boundary_with_forever(files, features) -> None:
    kw = dict(shuffle_buffer=40, seed=2)
    per_epoch = _loader(files, features, **kw).num_batches_per_epoch
    reference = _uids(list(itertools.islice(_loader(files, features, **kw).forever(), 25)))
    first = _loader(files, features, **kw)
    head = _uids(list(itertools.islice(first.forever(), per_epoch + 3)))
    state = first.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 3)
    resumed = _loader(files, features, **kw)
    resumed.load_state_dict(state)
    tail = _uids(list(itertools.islice(resumed.forever(), 25 - per_epoch - 3)))
    assert head + tail == reference
    assert resumed.epoch == 2


def test_state_with_batches_in_flight_replays_them(files, features) -> None:
    kw = dict(shuffle_buffer=40, seed=2)
    loader = _loader(files, features, **kw)
    per_epoch = loader.num_batches_per_epoch
    batches = list(itertools.islice(loader.forever(), per_epoch + 1))
    state = loader.state_dict(in_flight=3)  # the last 3, one in the new epoch, are not trained
    assert (state["epoch"], state["batches"]) == (0, per_epoch - 2)
    resumed = _loader(files, features, **kw)
    resumed.load_state_dict(state)
    assert _uids(list(itertools.islice(resumed.forever(), 3))) == _uids(batches[-3:])
    with pytest.raises(ValueError, match="cannot go back"):
        loader.state_dict(in_flight=per_epoch + 2)


@pytest.mark.parametrize("new_world", [1, 3])
def test_restore_at_another_world_size_neither_skips_nor_repeats(files, features, new_world):
    old = [
        _loader(files, features, rank=r, world_size=2, shuffle_buffer=40, seed=4, drop_last=False)
        for r in range(2)
    ]
    head = [u for lo in old for u in _uids(_all(lo, 2))]
    states = [lo.state_dict() for lo in old]
    assert states[0] == states[1]  # rank-independent, as DCP wants
    new = [
        _loader(
            files,
            features,
            rank=r,
            world_size=new_world,
            shuffle_buffer=40,
            seed=4,
            drop_last=False,
        )
        for r in range(new_world)
    ]
    for lo in new:
        lo.load_state_dict(states[0])
    tails = [_all(lo) for lo in new]
    assert len({len(t) for t in tails}) == 1  # the new ranks still step together
    rest = [u for t in tails for u in _uids(t)]
    assert sorted(head + rest) == list(range(N))
    # The continued epoch can be saved and restored again.
    again = _loader(
        files, features, rank=0, world_size=new_world, shuffle_buffer=40, seed=4, drop_last=False
    )
    again.load_state_dict(states[0])
    _all(again, 1)
    third = _loader(
        files, features, rank=0, world_size=new_world, shuffle_buffer=40, seed=4, drop_last=False
    )
    third.load_state_dict(again.state_dict())
    assert _uids(_all(third)) == _uids(tails[0][1:])


def test_restore_rejects_a_state_of_other_data(files, features) -> None:
    state = _loader(files, features).state_dict()
    with pytest.raises(ValueError, match="seed 0 over 163 rows"):
        _loader(files, features, seed=9).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        _loader(files, features).load_state_dict({"epoch": 0})


def test_newer_iterator_supersedes_the_old(files, features) -> None:
    loader = _loader(files, features)
    old = iter(loader)
    next(old)
    _all(loader, 1)
    with pytest.raises(RuntimeError, match="superseded"):
        next(old)


def test_too_few_rows_is_a_clear_error(files, features) -> None:
    with pytest.raises(DataError, match="cannot give each of 4 ranks a batch of 64"):
        _loader(files, features, batch_size=64, world_size=4)


def _bad_file(tmp_path: Path, features, overrides, arrow_schema=None) -> Path:
    uids = np.arange(40)
    return _write(tmp_path / "bad.parquet", uids, features, overrides, arrow_schema)


def _read_all(path: Path, features) -> ParquetBatchLoader:
    loader = _loader([path], features, drop_last=False)
    _all(loader)
    return loader


def test_nan_label_names_file_and_row(tmp_path, features) -> None:
    click = (np.arange(40) % 5 == 0).astype(np.float32)
    click[35] = np.nan
    fields = [
        f if f.name != schema.CLICK else pa.field(schema.CLICK, pa.float32())
        for f in schema.arrow_schema(features)
    ]
    path = _bad_file(tmp_path, features, {schema.CLICK: click}, pa.schema(fields))
    with pytest.raises(DataError, match=r"bad\.parquet: row 35: column 'click': label is NaN"):
        _read_all(path, features)


def test_label_two_names_file_and_row(tmp_path, features) -> None:
    click = (np.arange(40) % 5 == 0).astype(np.int8)
    click[7] = 2
    path = _bad_file(tmp_path, features, {schema.CLICK: click})
    with pytest.raises(DataError, match=r"bad\.parquet: row 7: column 'click': label 2 is not 0"):
        _read_all(path, features)


def test_conversion_without_click_names_file_and_row(tmp_path, features) -> None:
    conv = (np.arange(40) % 15 == 0).astype(np.int8)
    conv[33] = 1  # uid 33: no click
    path = _bad_file(tmp_path, features, {schema.CONVERSION: conv})
    with pytest.raises(DataError, match=r"bad\.parquet: row 33: .*conversion without a click"):
        _read_all(path, features)


def test_missing_or_mistyped_columns_are_named(tmp_path, features) -> None:
    table = pa.table(_columns(np.arange(4)), schema=schema.arrow_schema(features))
    pq.write_table(table.drop_columns(["item_brand"]), tmp_path / "a.parquet")
    with pytest.raises(DataError, match=r"a\.parquet: column 'item_brand': feature column is"):
        _loader([tmp_path / "a.parquet"], features, batch_size=2)
    cols = _columns(np.arange(4))
    cols["item_brand"] = [[1], [2], [3], [4]]
    pq.write_table(pa.table(cols), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: column 'item_brand': expected an integer"):
        _loader([tmp_path / "b.parquet"], features, batch_size=2)


def test_out_of_range_ids_are_hashed_and_counted(tmp_path, features) -> None:
    uids = np.arange(40)
    item = (uids * 7) % 50000
    item[[3, 20]] = [50000, -2]
    hist = _lists(uids, 4, lambda u, j: (u * 10 + j) % 50000)
    hist[6][1] = 123456  # row 6: the second of its 2 values
    hist[39][0] = -1
    path = _bad_file(tmp_path, features, {"item_id": item, "user_hist_items": hist})
    loader = _loader([path], features, drop_last=False)
    batches = _all(loader)
    got = np.concatenate([b.features["item_id"].values().numpy() for b in batches])
    assert got[3] == hash_into(np.array([50000]), 50000)[0]
    assert got[20] == hash_into(np.array([-2]), 50000)[0]
    assert ((got >= 0) & (got < 50000)).all()
    assert loader.oov_counts["item_id"] == 2
    assert loader.oov_counts["user_hist_items"] == 2
    assert loader.oov_counts["user_id"] == 0
    hist_values = np.concatenate([b.features["user_hist_items"].values().numpy() for b in batches])
    assert hist_values.min() >= 0 and hist_values.max() < 50000
    assert len(hist_values) == sum(len(h) for h in hist)


def test_out_of_range_error_policy_names_feature_file_and_row(tmp_path, cfg) -> None:
    features = load_config(CONFIG, ["features.user.4.out_of_range=error"]).features
    hist = _lists(np.arange(40), 4, lambda u, j: (u * 10 + j) % 50000)
    hist[22][1] = -3
    path = _bad_file(tmp_path, features, {"user_hist_items": hist})
    with pytest.raises(DataError, match=r"bad\.parquet: row 22: column 'user_hist_items': .*-3"):
        _read_all(path, features)


def test_loader_for_split_uses_the_config(tmp_path, features) -> None:
    cfg = load_config(CONFIG, [f"data.path={tmp_path}", "data.batch_size=8"])
    _write(schema.part_path(tmp_path, "val", 0), np.arange(20), features)
    _write(schema.part_path(tmp_path, "train", 0), np.arange(20), features)
    val = loader_for_split(cfg, "val", rank=1, world_size=2)
    assert (val.batch_size, val.world_size, val.num_batches_per_epoch) == (8, 2, 2)
    assert _uids(_all(val)) == list(range(10, 20))  # val: file order, nothing dropped
    train = loader_for_split(cfg, "train")
    assert train.num_batches_per_epoch == 2 and train.rows_dropped_per_epoch == 4
    uids = _uids(_all(train))
    assert len(set(uids)) == 16 and uids != sorted(uids)  # train: shuffled


def test_drop_last_restore_at_another_world_size_never_repeats(files, features) -> None:
    kw = dict(shuffle_buffer=40, seed=8, batch_size=8)
    old = [_loader(files, features, rank=r, world_size=2, **kw) for r in range(2)]
    head = [u for lo in old for u in _uids(_all(lo, 3))]
    new = [_loader(files, features, rank=r, world_size=3, **kw) for r in range(3)]
    for lo in new:
        lo.load_state_dict(old[0].state_dict())
    tails = [_all(lo) for lo in new]
    # 163 - 48 = 115 rows left; 38 per rank: 4 full batches of 8 each.
    assert [len(t) for t in tails] == [4, 4, 4]
    rest = [u for t in tails for u in _uids(t)]
    assert len(set(head + rest)) == len(head) + len(rest) == 48 + 96
    assert all(lo.epoch == 1 for lo in new)


def test_state_saved_at_an_epochs_last_batch_restores_into_the_next_epoch(files, features):
    kw = dict(shuffle_buffer=40, seed=8, batch_size=8)
    old = _loader(files, features, world_size=2, **kw)
    _all(old, old.num_batches_per_epoch)  # the generator has not noticed the end yet
    state = old.state_dict()
    assert (state["epoch"], state["batches"]) == (0, old.num_batches_per_epoch)
    new = _loader(files, features, world_size=1, **kw)
    new.load_state_dict(state)
    assert new.epoch == 1 and new.state_dict()["batches"] == 0
    fresh = _loader(files, features, world_size=1, **kw)
    _all(fresh)  # epoch 0
    assert _uids(_all(new, 2)) == _uids(_all(fresh, 2))
