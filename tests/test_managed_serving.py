"""Export and `retrieve` map raw ids of managed features through the remapping training used.

A tiny world whose user_id / user_hist_items / item_id tables have half as many rows as ids
(`synthetic.oversubscribed_ids`), those features under managed collisions, is trained 20 steps
on one process and exported. The same users' raw ids then go through training's input path
(the loader's `table_kjt`, then the model's remapping) and serving's (a JSON-lines request, then
the export's `managed_ids.npz`), and must land in the same rows, with the same query vectors.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_export import REPO, TINY, _cli, trained_model

from dmmp_rec.config import config_from_dict, load_config
from dmmp_rec.data.catalogue import USERS_FILE, user_side
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.data.synthetic.generate import generate_world
from dmmp_rec.inference.catalogue_vectors import encode_users
from dmmp_rec.serving.managed_map import MANAGED_FILE
from dmmp_rec.serving.manifest import read_manifest
from dmmp_rec.serving.requests import parse_jsonl
from dmmp_rec.serving.retrieve import Retriever

MANAGED = [
    "synthetic.oversubscribed_ids=true",
    "features.user.0.cardinality=150",
    "features.user.0.ids=managed",
    "features.user.4.cardinality=200",
    "features.user.4.ids=managed",
    "features.user.4.managed.eviction_policy=lru",
    "features.item.0.cardinality=200",
    "features.item.0.ids=managed",
    "features.user.0.managed.eviction_interval=1",  # 20 steps only: admit on every step
    "features.user.4.managed.eviction_interval=1",
    "features.item.0.managed.eviction_interval=1",
]


@pytest.fixture(scope="module")
def managed_export(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("managed_serving")
    overrides = [*TINY, *MANAGED, f"data.path={root / 'world'}", f"train.out={root / 'run'}"]
    generate_world(load_config(REPO / "configs/synthetic.yaml", overrides), root / "world")
    _cli("train", "--config", "configs/synthetic.yaml", *overrides)
    _cli("export", "--checkpoint", str(root / "run"), "--out", str(root / "export"), "--quiet")
    cfg = config_from_dict(json.loads((root / "run" / "config.json").read_text()))
    return cfg, root, trained_model(cfg, root / "run")


@pytest.mark.slow
def test_training_and_serving_give_raw_ids_the_same_rows(managed_export, tmp_path) -> None:
    cfg, root, model = managed_export
    users = pq.read_table(root / "world" / USERS_FILE).slice(0, 64)
    specs = user_side(cfg.features)
    # training's path: the loader's decoding (raw ids kept), then the model's remapping
    trained = model.sparse.managed(table_kjt(users, specs)).to_dict()
    # serving's path: a JSON-lines request with the same raw ids, one never seen, then retrieve
    unseen = 2**62 + 12345
    lines = []
    for r, row in enumerate(users.to_pylist()):
        lines.append(json.dumps({**row, "user_id": unseen} if r == 0 else row))
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(lines) + "\n")
    retriever = Retriever(root / "export")
    assert read_manifest(root / "export").files["managed_ids"].path == MANAGED_FILE
    served = retriever.id_map.apply(parse_jsonl(path, retriever.features))
    for j, feature in enumerate(served.features):
        if feature.ids != "managed":
            continue
        rows = trained[feature.name].values().numpy()
        got = served.values[j]
        if feature.name == "user_id":
            assert got[0] == feature.cardinality - 1  # never admitted: the miss row
            assert np.array_equal(got[1:], rows[1:])
            assert (rows < feature.cardinality - 1).mean() > 0.5  # most users have own rows
        else:
            assert np.array_equal(got, rows) and rows.max() < feature.cardinality
    # and the query vectors retrieve computes equal the trained model's on the raw ids
    same = parse_jsonl(path, retriever.features)
    queries, _ = retriever.encode(same)
    ref, _ = encode_users(model, cfg.features, users, 64)
    np.testing.assert_allclose(queries[1:], ref[1:], atol=1e-4)
    assert not torch.equal(torch.from_numpy(queries[0]), torch.from_numpy(ref[0]))
