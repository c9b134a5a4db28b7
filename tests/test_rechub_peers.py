"""The torch-rechub peers at their best: DSSM's vectors are signed and its temperature is in its
scores and its in-batch loss (which is torch-rechub's own), and every peer is built and
optimised by the recipe it names (compare/rechub/recipes.py)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support import tiny_config
from torch import nn
from torch_rechub.models.matching import DSSM
from torchrec.optim.keyed import CombinedOptimizer
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from dmmp_rec.compare.models import MODELS
from dmmp_rec.compare.rechub.dssm import TemperedDSSM
from dmmp_rec.compare.rechub.models import RechubPeer, RechubRetriever, uniform_dim
from dmmp_rec.compare.rechub.notes import PEER_NOTES, peer_notes
from dmmp_rec.compare.rechub.recipes import DOC_DSSM, RECIPES, recipe
from dmmp_rec.compare.rechub.train import PeerBatches, make_trainer, train_rechub
from dmmp_rec.data.loader import loader_for_split

CPU = torch.device("cpu")


def _batch(cfg, split: str = "val"):  # noqa: ANN001, ANN202
    return next(iter(loader_for_split(cfg, split, drop_last=False)))


@pytest.mark.parametrize("name", ["rechub_dssm", "rechub_dssm_adagrad"])
def test_dssm_vectors_are_signed_and_tempered(tiny_world: Path, tmp_path: Path, name: str) -> None:
    cfg = tiny_config(tiny_world, tmp_path)
    peer, summary = train_rechub(name, cfg, 4, cfg.data.batch_size, CPU, tmp_path / name)
    assert summary["rows_in_loss"] > 0 and summary["recipe"] == name
    retriever = RechubRetriever(peer)
    features = _batch(cfg).features
    with torch.no_grad():
        q, i = retriever.query_vector(features), retriever.item_vector(features)
    tau = recipe(name).temperature or cfg.model.student.tau
    assert q.shape[1] == i.shape[1] == peer.vector_dim
    for vectors in (q, i):  # no ReLU on the vector: coordinates of both signs
        assert float(vectors.min()) < 0 < float(vectors.max())
    assert torch.allclose(i.norm(dim=1), torch.ones(len(i)), atol=1e-5)
    assert torch.allclose(q.norm(dim=1), torch.full((len(q),), 1 / tau), rtol=1e-5)
    # the stock model with the same widths ends in BatchNorm + ReLU: every coordinate >= 0, so
    # every cosine >= 0 and every point-wise score sigmoid(cosine) >= 0.5
    stock = DSSM(peer.query_features, peer.item_features, {"dims": [8, 4]}, {"dims": [8, 4]})
    stock.eval()
    with torch.no_grad():
        assert float(stock.user_tower(peer.inputs(features)).min()) >= 0.0


def test_inbatch_loss_is_torch_rechubs(tiny_world: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_world, tmp_path)
    torch.manual_seed(0)
    peer = RechubPeer("rechub_dssm", cfg)
    model = peer.model
    assert isinstance(model, TemperedDSSM)
    trainer = make_trainer(peer, cfg, CPU, tmp_path)
    assert trainer.in_batch_neg and trainer.in_batch_neg_ratio is None
    x, y = next(iter(PeerBatches(peer, cfg, 50, cfg.data.batch_size)))
    assert len(y) >= 2 and bool((y == 1).all())  # clicked rows only
    model.train()
    with torch.no_grad():  # by hand: cosine / temperature, softmax over the batch's items
        user = model.embedding(x, model.user_features, squeeze_dim=True)
        item = model.embedding(x, model.item_features, squeeze_dim=True)
        u = F.normalize(model.user_mlp(user), dim=1)
        v = F.normalize(model.item_mlp(item), dim=1)
        cos = u @ v.T
        expected = float((torch.logsumexp(cos / 0.02, 1) - cos.diag() / 0.02).mean())
        untempered = float((torch.logsumexp(cos, 1) - cos.diag()).mean())
    loss = trainer.train_one_epoch([(x, y)])  # loss before its one update
    assert loss == pytest.approx(expected, rel=1e-4)
    assert abs(expected - untempered) > 0.1  # the temperature matters to the check


def _embed_dims(peer: RechubPeer) -> set[int]:
    return {f.embed_dim for f in peer.query_features + peer.item_features}


def test_each_recipe_is_the_one_configured(tiny_world: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_world, tmp_path)
    t, train = cfg.model.teacher, cfg.train
    assert {m.rechub for m in MODELS if m.family == "rechub"} == set(RECIPES) == set(PEER_NOTES)
    for name, r in RECIPES.items():
        peer = RechubPeer(name, cfg)
        model = peer.model
        trainer = make_trainer(peer, cfg, CPU, tmp_path)
        opt = trainer.optimizer
        tables = {id(p) for p in model.embedding.parameters()}
        every = {id(p) for p in model.parameters()}
        if r.widths == "documented":
            assert isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1, name
            group = opt.param_groups[0]
            assert (group["lr"], group["weight_decay"]) == (r.lr, r.weight_decay), name
            assert {id(p) for p in group["params"]} == every, name
            assert _embed_dims(peer) == {r.embed_dim}, name
        else:
            assert isinstance(opt, CombinedOptimizer), name
            parts = dict(opt.optimizers)
            sparse, dense = parts["tables"]._optimizer, parts["dense"]._optimizer
            assert isinstance(sparse, RowWiseAdagrad) and type(dense) is torch.optim.AdamW
            assert sparse.param_groups[0]["lr"] == train.embedding_lr, name
            assert dense.param_groups[0]["lr"] == train.dense_lr, name
            assert dense.param_groups[0]["weight_decay"] == train.weight_decay, name
            assert {id(p) for p in sparse.param_groups[0]["params"]} == tables, name
            assert {id(p) for p in dense.param_groups[0]["params"]} == every - tables, name
            assert _embed_dims(peer) == {uniform_dim(cfg)}, name
    doc = {n: RechubPeer(n, cfg).model for n in ("rechub_mmoe", "rechub_ple", "rechub_dssm")}
    assert doc["rechub_mmoe"].n_expert == 8
    assert doc["rechub_mmoe"].experts[0].mlp[0].out_features == 16
    cgc = doc["rechub_ple"].cgc_layers[0]
    assert (len(cgc.experts_specific), len(cgc.experts_shared)) == (2 * 2, 1)
    ours = RechubPeer("rechub_mmoe_adagrad", cfg).model
    assert ours.n_expert == t.shared_experts + 2 * t.task_experts
    assert ours.experts[0].mlp[0].out_features == t.expert_dims[0]
    dssm = doc["rechub_dssm"]
    assert dssm.temperature == 0.02 and dssm.out_dim == DOC_DSSM["out_dim"]
    assert any(isinstance(m, nn.PReLU) for m in dssm.user_mlp.modules())
    assert isinstance(dssm.user_mlp[-1], nn.Linear)  # the vector: no BatchNorm, no activation
    ours_dssm = RechubPeer("rechub_dssm_adagrad", cfg).model
    assert ours_dssm.temperature == cfg.model.student.tau
    assert ours_dssm.out_dim == cfg.model.student.out_dim
    notes = peer_notes(list(RECIPES), cfg)
    assert len(notes) == 1 + len(RECIPES) and "{" not in "".join(notes)


def test_rowwise_adagrad_moves_each_touched_row_by_lr(tiny_world: Path, tmp_path: Path) -> None:
    """First step of row-wise Adagrad: a row with gradient g moves by lr * g / rms(g), so by
    exactly lr * sqrt(D) in norm; rows outside the batch do not move."""
    cfg = tiny_config(tiny_world, tmp_path)
    torch.manual_seed(0)
    peer = RechubPeer("rechub_ple_adagrad", cfg)
    trainer = make_trainer(peer, cfg, CPU, tmp_path)
    x, y = next(islice(iter(PeerBatches(peer, cfg, 1, cfg.data.batch_size)), 1))
    table = peer.model.embedding.embed_dict["item_id"].weight
    before = table.detach().clone()
    trainer.train_one_epoch([(x, y)])
    moved = (table.detach() - before).norm(dim=1)
    touched = torch.zeros(len(table), dtype=torch.bool)
    touched[x["item_id"]] = True
    lr, dim = cfg.train.embedding_lr, table.shape[1]
    assert torch.allclose(moved[touched], torch.full_like(moved[touched], lr * dim**0.5), rtol=1e-3)
    assert float(moved[~touched].abs().max()) == 0.0
