"""`dmmp-rec export`: the user side runs without dmmp_rec and gives the training model's query
vectors; item vectors, indexes and manifest describe the trained model; nothing needs pickle.

A tiny world is trained for a few steps (`dmmp-rec train`, one process) and exported
(`dmmp-rec export`) once per session; tests/test_retrieve.py re-uses the same fixture.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from dmmp_rec.cli import main
from dmmp_rec.config import DmmpConfig, config_from_dict, load_config
from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE
from dmmp_rec.data.synthetic.generate import generate_world
from dmmp_rec.distributed.env import shutdown
from dmmp_rec.inference.catalogue_vectors import encode_items, encode_users
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.factory import build_model
from dmmp_rec.serving.export import export_run
from dmmp_rec.serving.index import recall_at_k
from dmmp_rec.serving.manifest import read_manifest
from dmmp_rec.serving.requests import parse_table
from dmmp_rec.serving.user_file import check_pickle_free
from dmmp_rec.serving.weights import ExportError, embedding_tables

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "synthetic.num_users=300",
    "synthetic.num_items=400",
    "synthetic.num_impressions=20000",
    "synthetic.num_days=4",
    "features.user.0.cardinality=300",
    "features.user.4.cardinality=400",
    "features.item.0.cardinality=400",
    "data.batch_size=128",
    "data.shuffle_buffer=1024",
    "model.teacher.expert_dims=[16]",
    "model.teacher.tower_dims=[8]",
    "model.student.tower_dims=[16]",
    "model.student.out_dim=8",
    "model.student.gate_dims=[8]",
    "train.max_steps=20",
    "train.eval_batches=1",
    "train.log_every=10",
]


@dataclass
class Exported:
    cfg: DmmpConfig
    run: Path
    export: Path
    model: DMMPModel  # the trained model, loaded from the checkpoint without sharding


def _cli(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dmmp_rec.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def trained_model(cfg: DmmpConfig, run: Path) -> DMMPModel:
    """The checkpoint's model part in a plain (unsharded) DMMPModel: DCP reshards to it."""
    model = build_model(cfg)
    state = {"model": model.state_dict()}
    step = sorted((run / "checkpoints").glob("step-*"))[-1]
    dcp.load(state, checkpoint_id=str(step))
    model.load_state_dict(state["model"])
    return model.eval()


_BUILT: dict[str, Exported] = {}  # test_retrieve imports the fixture: build once per session


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    if "run" not in _BUILT:
        _BUILT["run"] = _train_and_export(tmp_path_factory.mktemp("serving"))
    return _BUILT["run"]


def _train_and_export(root: Path) -> Exported:
    overrides = [*TINY, f"data.path={root / 'world'}", f"train.out={root / 'run'}"]
    cfg = load_config(REPO / "configs/synthetic.yaml", overrides)
    generate_world(cfg, root / "world", progress=False)
    _cli("train", "--config", "configs/synthetic.yaml", *overrides)
    # export in this process, through the command; the process group it creates is ours to end
    created = not dist.is_initialized()
    try:
        argv = ["export", "--checkpoint", str(root / "run"), "--out", str(root / "export")]
        assert main([*argv, "--recall-queries", "200", "--quiet"]) == 0
    finally:
        if created:
            shutdown()
    cfg = config_from_dict(json.loads((root / "run" / "config.json").read_text()))
    return Exported(cfg, root / "run", root / "export", trained_model(cfg, root / "run"))


def _users(ex: Exported, n: int = 48):
    table = pq.read_table(Path(ex.cfg.data.path) / USERS_FILE)
    return table.slice(0, n)


_ISOLATED = textwrap.dedent(
    """
    import os, sys
    repo = os.path.realpath(sys.argv[3])
    sys.path = [p for p in sys.path if p and os.path.realpath(p) != repo]
    sys.modules["dmmp_rec"] = None  # any import of dmmp_rec now raises ImportError
    import numpy as np, torch
    data = np.load(sys.argv[1], allow_pickle=False)
    n = int(data["n"])
    values = [torch.from_numpy(data[f"v{i}"]) for i in range(n)]
    offsets = [torch.from_numpy(data[f"o{i}"]) for i in range(n)]
    module = torch.export.load(sys.argv[2] + "/user_side.pt2").module()
    with torch.no_grad():
        query, gate = module(values, offsets, torch.zeros(1))
        query_b, gate_b = module(values, offsets, torch.tensor([1.5]))
    loaded = sorted(m for m in sys.modules if m.startswith("dmmp_rec") and sys.modules[m])
    np.savez(sys.argv[1] + ".out.npz", query=query.numpy(), gate=gate.numpy(),
             query_b=query_b.numpy(), gate_b=gate_b.numpy())
    print("dmmp_rec modules:", loaded)
    """
)


def test_user_side_matches_training_model_without_dmmp_rec(exported, tmp_path):
    original = _users(exported)
    # the last user's history is emptied: an empty bag must pool to zeros, as in the EBC
    column = original.column_names.index("user_hist_items")
    history = original.column("user_hist_items").to_pylist()
    users = original.set_column(column, "user_hist_items", [history[:-1] + [[]]])
    manifest = read_manifest(exported.export)
    requests = parse_table(users, manifest.user_features, "users")
    values, starts = requests.batch(0, len(requests))
    arrays = {"n": np.array(len(values))}
    arrays.update({f"v{i}": v.numpy() for i, v in enumerate(values)})
    arrays.update({f"o{i}": o.numpy() for i, o in enumerate(starts)})
    np.savez(tmp_path / "in.npz", **arrays)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED, str(tmp_path / "in.npz"), str(exported.export)]
        + [str(REPO)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dmmp_rec modules: []" in proc.stdout
    out = np.load(tmp_path / "in.npz.out.npz", allow_pickle=False)

    query, gate = encode_users(exported.model, exported.cfg.features, users)
    assert out["query"].shape == (len(users), exported.model.vector_dim)
    np.testing.assert_allclose(out["query"], query, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["gate"], gate, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["gate"].sum(1), 1.0, atol=1e-6)
    # the serving knob is an input of the archive: beta 1.5 matches the model at beta 1.5
    query_b, gate_b = encode_users(exported.model, exported.cfg.features, users, beta=1.5)
    np.testing.assert_allclose(out["query_b"], query_b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["gate_b"], gate_b, atol=1e-5, rtol=0)
    assert (out["gate_b"][:, 1] > out["gate"][:, 1]).all()  # beta > 0 leans to conversion
    before, _ = encode_users(exported.model, exported.cfg.features, original)
    assert np.abs(before[-1] - query[-1]).max() > 1e-3  # the empty bag was really exercised


def test_manifest_describes_the_trained_model(exported):
    m = read_manifest(exported.export)
    student = exported.model.student
    assert m.versions["torch"] == torch.__version__
    assert m.versions["faiss"] == faiss.__version__
    assert {"dmmp_rec", "torchrec", "numpy"} <= set(m.versions)
    assert m.variant == "dmmp"
    assert (m.vector_dim, m.tower_dim) == (16, 8)
    assert m.tau == pytest.approx(float(student.tau().detach()), rel=1e-6)
    assert m.tau != pytest.approx(0.05, rel=1e-6)  # learnt: tau moved in 20 steps
    assert m.num_items == 400 and m.train_step == 20
    names = [f.name for f in m.user_features]
    assert names == [s.name for s in exported.cfg.features.group("user")] + ["ctx_hour"]
    hist = m.user_features[names.index("user_hist_items")]
    assert (hist.cardinality, hist.pooling, hist.multi_valued) == (400, "mean", True)
    for entry in m.files.values():
        assert (exported.export / entry.path).stat().st_size == entry.bytes
    assert m.query_max_abs_diff < 1e-5
    assert m.approx.kind == "hnsw" and m.approx.queries == 200 and m.approx.k == 100
    assert m.approx.recall >= m.approx.target == 0.95
    assert m.approx.tried[str(m.approx.ef_search)] == m.approx.recall


def test_item_vectors_and_indexes(exported):
    m = read_manifest(exported.export)
    vectors = np.load(exported.export / "item_vectors.npy", allow_pickle=False)
    ids = np.load(exported.export / "item_ids.npy", allow_pickle=False)
    items = pq.read_table(Path(exported.cfg.data.path) / ITEMS_FILE)
    expected = encode_items(exported.model, exported.cfg.features, items)
    np.testing.assert_allclose(vectors, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ids, np.arange(400))
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :8], axis=1), 1.0, atol=1e-5)

    exact = faiss.read_index(str(exported.export / "exact.faiss"))
    approx = faiss.read_index(str(exported.export / "approx.faiss"))
    faiss.downcast_index(approx).hnsw.efSearch = m.approx.ef_search
    assert exact.ntotal == approx.ntotal == 400
    query, _ = encode_users(exported.model, exported.cfg.features, _users(exported, 300))
    scores, found = exact.search(query, 10)
    brute = np.argsort(-(query @ vectors.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(query @ vectors.T, found, 1), atol=1e-4)
    assert recall_at_k(found, brute) > 0.99  # ties aside, the exact index is exact
    _, truth = exact.search(query, 100)
    _, near = approx.search(query, 100)
    assert recall_at_k(near, truth) >= 0.9  # other users than the tuning sample


def test_user_side_archive_is_pickle_free_and_tampering_is_refused(exported, tmp_path):
    check_pickle_free(exported.export / "user_side.pt2")
    bad = tmp_path / "bad.pt2"
    with (
        zipfile.ZipFile(exported.export / "user_side.pt2") as src,
        zipfile.ZipFile(bad, "w") as dst,
    ):
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"]))
                config["config"][first]["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(name, data)
    with pytest.raises(ExportError, match="pickled objects"):
        check_pickle_free(bad)
    with pytest.raises(ExportError, match="not a torch.export archive"):
        check_pickle_free(exported.export / "manifest.json")


def test_export_refuses_to_replace_a_directory_that_is_not_an_export(exported, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an export directory"):
        export_run(exported.cfg, exported.run, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_export_needs_the_item_catalogue(exported, tmp_path):
    cfg = copy.deepcopy(exported.cfg)
    cfg.data.path = str(tmp_path)
    with pytest.raises(ExportError, match="items.parquet: no item catalogue"):
        export_run(cfg, exported.run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_embedding_tables_need_tables():
    with pytest.raises(ExportError, match="no embedding tables"):
        embedding_tables({"dense.x": torch.zeros(2)}, "sparse.ebc.embedding_bags.")
    tables = embedding_tables(
        {"sparse.ebc.embedding_bags.t_a.weight": torch.ones(3, 2)}, "sparse.ebc.embedding_bags."
    )
    assert list(tables) == ["t_a"] and tables["t_a"].shape == (3, 2)
