"""Managed collisions (torchrec's MCH modules) for the id features: config, remapping, the
collision measure, and on 2 gloo ranks: replicas that stay equal, checkpoints that reload the
same lookups on 2 ranks and on 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from support import CONFIG, REPO, run_ranks, tiny_config, tiny_overrides
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import ConfigError, load_config
from dmmp_rec.config.features import FeatureSpec, ManagedIdsSpec
from dmmp_rec.data.catalogue import load_catalogue
from dmmp_rec.data.kjt import decode_ids
from dmmp_rec.eval.id_collisions import best_possible, collision_rate
from dmmp_rec.model.managed_ids import ManagedIds

ROWS = str(REPO / "tests" / "scripts" / "managed_rows.py")
# user_id, item_id and user_hist_items managed, with half as many rows as the world has ids
MANAGED = [
    "synthetic.oversubscribed_ids=true",
    "features.user.0.ids=managed",
    "features.user.0.cardinality=1000",
    "features.item.0.ids=managed",
    "features.item.0.cardinality=1500",
    "features.user.4.ids=managed",
    "features.user.4.cardinality=1500",
    # admit on every step: these runs are a few steps long (the default is 50)
    "features.user.0.managed.eviction_interval=1",
    "features.item.0.managed.eviction_interval=1",
    "features.user.4.managed.eviction_interval=1",
]


def _spec(name: str, rows: int, **kw: object) -> FeatureSpec:
    spec = FeatureSpec(
        name, rows, 4, ids="managed", managed=ManagedIdsSpec(eviction_interval=1), **kw
    )  # type: ignore[arg-type]
    spec.group = "user"
    return spec


def test_config_rejects_bad_managed_settings() -> None:
    with pytest.raises(ConfigError, match=r"features\.user\.0\.managed\.eviction_interval"):
        load_config(
            CONFIG, ["features.user.0.ids=managed", "features.user.0.managed.eviction_interval=0"]
        )
    with pytest.raises(ConfigError, match=r"features\.user\.0\.managed\.eviction_policy"):
        load_config(
            CONFIG, ["features.user.0.ids=managed", "features.user.0.managed.eviction_policy=fifo"]
        )
    with pytest.raises(ConfigError, match=r"features\.cross\.0\.ids"):
        load_config(CONFIG, ["features.cross.0.ids=managed"])
    with pytest.raises(ConfigError, match=r"features\.user\.0\.ids"):
        load_config(CONFIG, ["features.user.0.ids=zch"])


def test_small_id_tables_need_the_oversubscribed_world() -> None:
    from dmmp_rec.data.synthetic.features import cardinalities

    small = ["features.user.0.cardinality=100", "features.item.0.cardinality=100"]
    with pytest.raises(ConfigError, match=r"features\.user\.0\.cardinality"):
        cardinalities(load_config(CONFIG, small))
    cardinalities(load_config(CONFIG, [*small, "synthetic.oversubscribed_ids=true"]))
    with pytest.raises(ConfigError, match=r"features\.context\.0\.cardinality"):
        cardinalities(
            load_config(
                CONFIG, ["synthetic.oversubscribed_ids=true", "features.context.0.cardinality=10"]
            )
        )


def test_new_64_bit_ids_get_rows_of_their_own_and_eval_admits_nothing() -> None:
    managed = ManagedIds([_spec("user_id", 8), _spec("hist", 8, multi_valued=True)])
    big = [2**62 + 5, -(2**40), 10**15]
    kjt = KeyedJaggedTensor(
        keys=["age", "user_id", "hist"],
        values=torch.tensor([3, 4, *big, big[0], 7, 7]),
        lengths=torch.tensor([1, 1, 1, 1, 1, 3]),
    )
    out = managed(kjt)
    assert out.keys() == ["age", "user_id", "hist"]
    assert out["age"].values().tolist() == [3, 4]  # an unmanaged key passes through
    users = out["user_id"].values().tolist()
    assert len(set(users)) == 2 and max(users) < 7  # two ids, two rows, not the miss row 7
    hist = out["hist"].values().tolist()
    assert hist[2] == hist[3] and len(set(hist)) == 3
    managed.eval()
    before = {k: v.clone() for k, v in managed.state_dict().items()}
    assert managed.rows("user_id", torch.tensor([2**62 + 5, 999])).tolist() == [users[0], 7]
    after = managed.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_loader_keeps_raw_ids_of_managed_features() -> None:
    arr = pa.array([2**62 + 1, 5, -3], pa.int64())
    raw = decode_ids(arr, _spec("user_id", 10)).values
    assert raw.tolist() == [2**62 + 1, 5, -3]
    hashed = FeatureSpec("user_id", 10, 4)
    folded = decode_ids(arr, hashed).values
    assert folded.max() < 10 and folded[1] == 5
    assert decode_ids(arr, hashed, fold=False).values.tolist() == raw.tolist()


def test_catalogue_ids_are_identities_not_rows(tiny_world: Path, tmp_path: Path) -> None:
    """With the hash fold and an item table half the catalogue, two items that share a row are
    still two items to evaluation: the catalogue keeps the raw ids."""
    small = ["synthetic.oversubscribed_ids=true", "features.item.0.cardinality=1500"]
    cat = load_catalogue(tiny_config(tiny_world, tmp_path, *small))
    assert cat.item_ids.tolist() == list(range(3000))


def test_collision_rate_counts_lookups_whose_row_holds_another_id() -> None:
    ids = np.array([1, 1, 2, 3, 4, 4])
    rows = np.array([0, 0, 0, 1, 2, 2])  # ids 1 and 2 share row 0
    got = collision_rate(ids, rows)
    assert got["lookups"] == pytest.approx(3 / 6)
    assert got["ids"] == pytest.approx(2 / 4)
    assert got["distinct_ids"] == 4


def test_best_possible_gives_the_most_looked_up_ids_their_own_rows() -> None:
    ids = np.array([1, 1, 1, 2, 2, 3, 4])  # 4 ids, 3 rows: ids 1 and 2 own rows, 3 and 4 share
    assert best_possible(ids, 3) == pytest.approx(2 / 7)
    assert best_possible(ids, 4) == 0.0  # 3 own rows, id 4 alone in the last one
    assert best_possible(ids, 10) == 0.0


@pytest.mark.slow
def test_replicas_take_the_same_admissions_from_every_rank(
    tiny_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "train.json"
    overrides = tiny_overrides(tiny_world, tmp_path / "run", *MANAGED)
    run_ranks(2, [ROWS, "train", str(CONFIG), "6", str(out), *overrides])
    ranks = json.loads(out.read_text())
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["rows"] == ranks[1]["rows"]
    # ids only rank 1 saw in its first batch got rows of their own on rank 0's replica too
    only_1 = set(ranks[1]["seen"]["user_id"]) - set(ranks[0]["seen"]["user_id"])
    seen = ranks[0]["seen"]["user_id"] + ranks[1]["seen"]["user_id"]
    rows = dict(zip(seen, ranks[0]["rows"]["user_id"], strict=True))
    assert only_1 and all(rows[i] != 999 for i in only_1)  # 999: the miss row of 1000


@pytest.mark.slow
def test_checkpoint_gives_the_same_lookups_on_two_ranks_and_on_one(
    tiny_world: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_world, run, *MANAGED, "train.max_steps=20", "train.checkpoint_every=10"
    )
    run_ranks(2, ["train", "--config", str(CONFIG), *overrides])
    two, one = tmp_path / "two.json", tmp_path / "one.json"
    run_ranks(2, [ROWS, "load", str(CONFIG), str(run), str(two), *overrides])
    run_ranks(1, [ROWS, "load", str(CONFIG), str(run), str(one), *overrides])
    a, b = json.loads(two.read_text()), json.loads(one.read_text())
    assert a[0] == a[1] and a[0]["rows"] == b[0]["rows"] and a[0]["digest"] == b[0]["digest"]
    users = np.array(a[0]["rows"]["user_id"])
    assert len(users) > 1000 and users.max() <= 999
    assert (users < 999).mean() > 0.5  # most probed users hold rows of their own
