"""Teacher-only cross features: computed from observables only, the same for logged rows and
candidate pairs, read by the teacher and never by a student tower, validated by the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from support import CONFIG, tiny_config

from dmmp_rec.config import ConfigError, load_config
from dmmp_rec.data.loader import loader_for_split
from dmmp_rec.data.schema import split_files
from dmmp_rec.data.synthetic.cross import HistoryCrosses
from dmmp_rec.data.synthetic.generate import generate_world
from dmmp_rec.model import build_model

CROSS = ["cross_hist_cat_hits", "cross_hist_brand_hits", "cross_hist_item"]


def test_logged_crosses_are_recomputed_from_the_catalogues_alone(tiny_world: Path) -> None:
    users = pq.read_table(tiny_world / "users.parquet").to_pydict()
    items = pq.read_table(tiny_world / "items.parquet").to_pydict()
    cat, brand = items["item_category"], items["item_brand"]
    rows = pq.read_table(split_files(tiny_world, "train")[0]).slice(0, 400).to_pydict()
    caps = {"cross_hist_cat_hits": 5, "cross_hist_brand_hits": 2, "cross_hist_item": 1}
    for r in range(400):
        u, i = rows["user_id"][r], rows["item_id"][r]
        hist = users["user_hist_items"][u]
        hand = {
            "cross_hist_cat_hits": sum(cat[j] == cat[i] for j in hist),
            "cross_hist_brand_hits": sum(brand[j] == brand[i] for j in hist),
            "cross_hist_item": int(i in hist),
        }
        for name in CROSS:
            assert rows[name][r] == min(hand[name], caps[name]), (r, name)
    # every value occurs: the features carry information
    assert set(rows["cross_hist_cat_hits"]) >= {0, 1, 2}
    assert set(rows["cross_hist_item"]) == {0, 1}


def test_crosses_change_no_behaviour_of_the_world(tiny_world: Path, tmp_path: Path) -> None:
    from support import TINY

    overrides = [*TINY, "features.cross=null"]
    plain = tmp_path / "plain"
    generate_world(load_config(CONFIG, [*overrides, f"data.path={plain}"]), plain, progress=False)
    for split in ("train", "test"):
        a = pq.read_table(split_files(plain, split))
        b = pq.read_table(split_files(tiny_world, split))
        assert not set(CROSS) & set(a.column_names)
        for name in a.column_names:
            assert a.column(name).equals(b.column(name)), (split, name)


def test_candidate_pairs_carry_the_crosses_of_the_rolled_pair(tiny_world: Path) -> None:
    cfg = tiny_config(tiny_world, tiny_world / "unused")
    r_max = cfg.model.loss.distill_candidates
    assert cfg.cross_candidates == r_max > 0
    source = HistoryCrosses.from_catalogues(tiny_world, cfg.features)
    batch = next(iter(loader_for_split(cfg, "train")))
    jts = batch.features.to_dict()
    users, items = jts["user_id"].values().numpy(), jts["item_id"].values().numpy()
    logged = source(users, items)
    for name in CROSS:
        np.testing.assert_array_equal(jts[name].values().numpy(), logged[name])
    for r in range(1, r_max + 1):
        want = source(users, np.roll(items, r))
        for name in CROSS:
            np.testing.assert_array_equal(jts[f"{name}@{r}"].values().numpy(), want[name])
    # variants without listwise distillation carry no candidate keys
    two = tiny_config(tiny_world, tiny_world / "unused", "model.variant=two_tower")
    keys = next(iter(loader_for_split(two, "train"))).features.keys()
    assert not [k for k in keys if "@" in k]


def _with(batch, key: str, values: torch.Tensor):  # noqa: ANN001, ANN202
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from dmmp_rec.data.batch import Batch

    jts = dict(batch.features.to_dict())  # a copy: the KJT caches and returns its own dict
    jts[key] = type(jts[key])(values=values, lengths=jts[key].lengths())
    kjt = KeyedJaggedTensor.from_jt_dict(jts)
    return Batch(kjt, batch.click, batch.conversion)


def test_only_the_teacher_reads_cross_features(tiny_world: Path) -> None:
    cfg = tiny_config(tiny_world, tiny_world / "unused")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = next(iter(loader_for_split(cfg, "train")))
    with torch.no_grad():
        _, out = model(batch)
        for name in CROSS:
            spec = cfg.features.by_name(name)
            moved = (batch.features[name].values() + 1) % spec.cardinality
            _, changed = model(_with(batch, name, moved))
            assert not torch.allclose(changed.scores.pctr, out.scores.pctr), name
            for key in ("s_c", "s_v", "fused", "gate"):
                assert torch.equal(getattr(changed.scores, key), getattr(out.scores, key)), key
        # a candidate pair's cross moves the listwise term only
        moved = (batch.features["cross_hist_cat_hits@1"].values() + 1) % 6
        _, changed = model(_with(batch, "cross_hist_cat_hits@1", moved))
        assert changed.losses["distill/ctcvr_rank"] != out.losses["distill/ctcvr_rank"]
        assert torch.equal(changed.losses["distill/ctcvr"], out.losses["distill/ctcvr"])
    # the student's towers are built for user, context and item widths: no cross input
    dims = model.sparse.group_dims
    assert model.student.user_tower.net[0].in_features == dims["user"] + dims["context"]
    assert model.student.conversion_tower.net[0].in_features == dims["item"]
    assert model.student.gate_net.net[0].in_features == dims["user"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            [
                "features.cross=[{name: cross_hist_cat_hits, cardinality: 6, dim: 4}]",
                "features.context=[{name: ctx_hour, cardinality: 24, dim: 4}, "
                "{name: cross_hist_item, cardinality: 2, dim: 4}]",
            ],
            "features.context.1.name: cross_hist_item describes a .user, item. pair: it belongs in",
        ),
        (["features.cross.0.name=item_shop"], "no feature 'item_shop'"),
        (["features.cross.0={name: ctx_hour, cardinality: 24, dim: 4}", "features.context=null"],
         "features.cross holds pair features only"),
    ],
)  # fmt: skip
def test_config_keeps_pair_features_in_the_cross_group(
    change: list[str], words: str, tmp_path: Path
) -> None:
    from support import TINY

    from dmmp_rec.data.synthetic.features import cardinalities

    with pytest.raises(ConfigError, match=words):
        cardinalities(load_config(CONFIG, [*TINY, *change, f"data.path={tmp_path}"]))
