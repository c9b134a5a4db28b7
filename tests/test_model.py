"""The DMMP model's contracts: outputs, entire-space heads, gate, distillation, retrieval vectors,
baselines, and what DDP / the sparse pipeline need (loss weighting: test_weighting.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from model_support import (
    CONTEXT_KEYS,
    ITEM_KEYS,
    TEACHERS,
    USER_KEYS,
    VARIANTS,
    B,
    _batch,
    _config,
    _model,
    _replace,
    _subset,
)
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.distributed.train_pipeline.tracing import Tracer
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.config import ConfigError
from dmmp_rec.config.model import DISTILL_TERMS, LOSS_TERMS
from dmmp_rec.data.batch import Batch
from dmmp_rec.model import build_model
from dmmp_rec.model.losses import in_batch_softmax


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_have_shapes_and_dtypes(variant: str) -> None:
    model = _model(variant=variant)
    loss, out = model(_batch())
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    for key, value in out.scores.row_scores().items():
        assert value.shape == (B,) and value.dtype == torch.float32, key
        assert not value.requires_grad, key
    assert out.scores.gate.shape == (B, 2) and out.scores.gate.dtype == torch.float32
    for term in model.loss_terms:
        assert out.losses[term].shape == () and torch.isfinite(out.losses[term]), term
        assert out.weights[term].shape == () and not out.weights[term].requires_grad
    assert set(out.losses) == set(model.loss_terms)
    assert set(model.loss_terms) <= set(LOSS_TERMS)


def test_scoring_forward_matches_the_training_scores() -> None:
    """`score` (evaluation) gives the training step's scores without losses or a step."""
    model = _model().eval()
    batch = _batch()
    with torch.no_grad():
        scores = model.score(batch)
        _, out = model(batch)
    for key, value in scores.row_scores().items():
        torch.testing.assert_close(value, getattr(out.scores, key), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scores.gate, out.scores.gate)
    assert int(model.train_step) == 0


def test_entire_space_ctcvr_never_exceeds_ctr() -> None:
    model = _model()
    _, out = model(_batch(size=256))
    assert torch.all(out.scores.pctcvr <= out.scores.pctr)
    assert torch.allclose(out.scores.pctcvr, out.scores.pctr * out.scores.pcvr)
    assert torch.all((out.scores.pcvr > 0) & (out.scores.pcvr < 1))


def test_gate_sums_to_one_and_reads_user_features_only() -> None:
    model = _model().eval()
    batch = _batch()
    with torch.no_grad():
        _, out = model(batch)
        torch.testing.assert_close(out.scores.gate.sum(-1), torch.ones(B))
        kjt = batch.features
        for key in ("item_id", "item_cat", "hour"):
            other = _replace(kjt, key, (kjt[key].values() + 1) % 6)
            _, changed = model(Batch(other, batch.click, batch.conversion))
            assert torch.equal(changed.scores.gate, out.scores.gate), key
            assert not torch.equal(changed.scores.fused, out.scores.fused), key
        other = _replace(kjt, "user_id", (kjt["user_id"].values() + 1) % 50)
        _, changed = model(Batch(other, batch.click, batch.conversion))
        assert not torch.allclose(changed.scores.gate, out.scores.gate)
        torch.testing.assert_close(model.user_gate(_subset(kjt, USER_KEYS)), out.scores.gate)


def test_distillation_sends_no_gradient_into_the_teacher() -> None:
    only_distill = {t: (1.0 if t in DISTILL_TERMS else 0.0) for t in LOSS_TERMS}
    model = _model(loss={"weighting": "fixed", "fixed_weights": only_distill})
    loss, out = model(_batch())
    assert all(float(out.losses[t]) > 0 for t in DISTILL_TERMS if t in model.loss_terms)
    loss.backward()
    teacher = dict(model.teacher.named_parameters())
    assert teacher
    for name, p in teacher.items():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name
    student_grads = [p.grad.abs().sum() for p in model.student.parameters()]
    assert sum(student_grads) > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_query_item_inner_product_is_the_fused_score(variant: str) -> None:
    model = _model(variant=variant).eval()
    batch = _batch()
    with torch.no_grad():
        _, out = model(batch)
        q = model.query_vector(_subset(batch.features, USER_KEYS + CONTEXT_KEYS))
        i = model.item_vector(_subset(batch.features, ITEM_KEYS))
    assert q.shape == i.shape == (B, model.vector_dim)
    assert model.vector_dim == (8 if variant == "two_tower" else 16)
    torch.testing.assert_close((q * i).sum(-1), out.scores.fused, rtol=1e-5, atol=1e-5)
    # the item vectors hold unit-norm tower outputs
    norms = i.view(B, -1, 8).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize("variant", ["dmmp", "no_gate"])
def test_serving_knob_shifts_the_gate_and_its_ends_are_single_towers(variant: str) -> None:
    model = _model(variant=variant).eval()
    batch = _batch()
    users = _subset(batch.features, USER_KEYS + CONTEXT_KEYS)
    items = _subset(batch.features, ITEM_KEYS)
    with torch.no_grad():
        _, out = model(batch)
        i = model.item_vector(items)
        # beta = 0 is the model as trained: the fused score
        torch.testing.assert_close((model.query_vector(users, 0.0) * i).sum(-1), out.scores.fused)
        # softmax(gate_logits + [0, beta]), by hand from the gate network's own logits
        beta = 1.25
        g = model.user_gate(_subset(batch.features, USER_KEYS), beta)
        if variant == "dmmp":
            logits = model.student.gate_net(model.sparse.lookup(users, ("user",))["user"])
        else:
            logits = torch.log(torch.full((B, 2), 0.5))
        want = torch.softmax(logits + torch.tensor([0.0, beta]), dim=-1)
        torch.testing.assert_close(g, want)
        assert (g[:, 1] > out.scores.gate[:, 1]).all()
        q = model.query_vector(users, beta)
        torch.testing.assert_close(
            (q * i).sum(-1),
            g[:, 0] * out.scores.s_c + g[:, 1] * out.scores.s_v,
            rtol=1e-5,
            atol=1e-5,
        )
        # -inf: click tower only; +inf: conversion tower only (exactly, not nearly)
        d = model.student.out_dim
        q_click = model.query_vector(users, -float("inf"))
        assert torch.count_nonzero(q_click[:, d:]) == 0
        torch.testing.assert_close((q_click * i).sum(-1), out.scores.s_c, rtol=1e-5, atol=1e-5)
        q_conv = model.query_vector(users, float("inf"))
        assert torch.count_nonzero(q_conv[:, :d]) == 0
        torch.testing.assert_close((q_conv * i).sum(-1), out.scores.s_v, rtol=1e-5, atol=1e-5)
        # query_parts + compose_query is the same query at any beta
        u_tau, z = model.query_parts(users)
        from dmmp_rec.model.student import compose_query

        for b in (-3.0, 0.0, 2.0):
            torch.testing.assert_close(compose_query(u_tau, z, b), model.query_vector(users, b))


def test_two_tower_ignores_the_serving_knob() -> None:
    model = _model(variant="two_tower").eval()
    users = _subset(_batch().features, USER_KEYS + CONTEXT_KEYS)
    with torch.no_grad():
        torch.testing.assert_close(model.query_vector(users, 3.0), model.query_vector(users))
        g = model.user_gate(_subset(_batch().features, USER_KEYS), 3.0)
    torch.testing.assert_close(g, torch.tensor([[1.0, 0.0]]).expand(B, 2))


def test_retrieval_lookup_names_missing_and_unknown_keys() -> None:
    model = _model()
    kjt = _batch().features
    with pytest.raises(ValueError, match="hour"):
        model.query_vector(_subset(kjt, USER_KEYS))
    bogus = KeyedJaggedTensor(
        keys=["item_id", "item_cat", "shop"], values=torch.arange(3), lengths=torch.ones(3).int()
    )
    with pytest.raises(ValueError, match="shop"):
        model.item_vector(bogus)


@pytest.mark.parametrize("teacher", TEACHERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_baseline_trains_and_every_parameter_gets_a_gradient(
    variant: str, teacher: str
) -> None:
    model = _model(variant=variant, teacher={"kind": teacher}).train()
    before = copy.deepcopy(model.state_dict())
    batch = _batch(size=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss, out = model(batch)
        opt.zero_grad()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters outside the graph (DDP would fail): {missing}"
        opt.step()
        losses.append(sum(float(out.losses[t]) for t in model.loss_terms))
    assert losses[-1] < losses[0]
    changed = [n for n, v in model.state_dict().items() if not torch.equal(v, before[n])]
    assert any(n.startswith("sparse.ebc.") for n in changed)
    assert any(n.startswith("dense.teacher.") for n in changed)


def test_baselines_differ_only_in_what_their_names_say() -> None:
    two = _model(variant="two_tower")
    assert two.student.conversion_tower is None and two.student.gate_net is None
    assert not any("conversion_tower" in n or "gate_net" in n for n, _ in two.named_parameters())
    assert two.loss_terms == ("teacher/ctr", "teacher/ctcvr", "student/ctr", "student/inbatch")
    _, out = two(_batch())
    assert torch.equal(out.scores.s_v, out.scores.s_c) and torch.equal(
        out.scores.fused, out.scores.s_c
    )

    no_gate = _model(variant="no_gate")
    assert no_gate.student.gate_net is None
    _, out = no_gate(_batch())
    assert torch.equal(out.scores.gate, torch.full((B, 2), 0.5))
    assert no_gate.loss_terms == _model().loss_terms

    no_distill = _model(variant="no_distill")
    assert not set(no_distill.loss_terms) & set(DISTILL_TERMS)
    dmmp = _model()
    # every term but the gate's own target (student.gate_training: teacher_cvr only)
    assert set(dmmp.loss_terms) == set(LOSS_TERMS) - {"distill/gate"}
    names = {n for n, _ in dmmp.named_parameters() if not n.startswith("dense.weighting")}
    assert names == {n for n, _ in no_distill.named_parameters() if "weighting" not in n}

    mmoe = _model(teacher={"kind": "mmoe"}).teacher.extractor
    assert all(len(experts) == 0 for experts in mmoe.level.tasks)
    assert len(mmoe.level.shared) == 2 + 2 * 1
    ple = _model().teacher.extractor
    assert len(ple.levels) == 2 and ple.levels[0].shared_gate is not None
    assert ple.levels[1].shared_gate is None


def test_in_batch_softmax_masks_duplicates_and_survives_no_clicks() -> None:
    u = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1).requires_grad_()
    items = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    tau = torch.tensor(0.1)
    same_item = in_batch_softmax(u, items, tau, torch.zeros(4, dtype=torch.long), torch.ones(4))
    assert same_item.item() == pytest.approx(0.0, abs=1e-6)
    none = in_batch_softmax(u, items, tau, torch.arange(4), torch.zeros(4))
    assert none.item() == 0.0
    none.backward()
    assert u.grad is not None
    distinct = in_batch_softmax(u, items, tau, torch.arange(4), torch.ones(4))
    expected = torch.nn.functional.cross_entropy(u @ items.T / tau, torch.arange(4))
    torch.testing.assert_close(distinct, expected)  # equal frequencies: log q is a constant


def _in_batch_softmax_full(u, items, tau, item_ids, positive):
    """The [B, B] form the positive-rows-only implementation replaced."""
    logits = u @ items.T / tau
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    log_q = torch.log(same.sum(0).to(logits.dtype) / item_ids.shape[0])
    eye = torch.eye(item_ids.shape[0], dtype=torch.bool)
    logits = (logits - log_q.unsqueeze(0)).masked_fill(same & ~eye, float("-inf"))
    ce = torch.nn.functional.cross_entropy(
        logits, torch.arange(item_ids.shape[0]), reduction="none"
    )
    weight = positive.to(ce.dtype)
    return (ce * weight).sum() / weight.sum().clamp(min=1.0)


def test_in_batch_softmax_on_positive_rows_equals_the_full_matrix_form() -> None:
    """Building only the clicked rows' logits keeps the loss and both gradients."""
    gen = torch.Generator().manual_seed(3)
    u0 = torch.nn.functional.normalize(torch.randn(64, 8, generator=gen), dim=-1)
    i0 = torch.nn.functional.normalize(torch.randn(64, 8, generator=gen), dim=-1)
    item_ids = torch.randint(0, 20, (64,), generator=gen)  # many duplicates
    positive = torch.rand(64, generator=gen) < 0.3
    tau = torch.tensor(0.2)
    grads = []
    for fn in (in_batch_softmax, _in_batch_softmax_full):
        u, items = u0.clone().requires_grad_(), i0.clone().requires_grad_()
        loss = fn(u, items, tau, item_ids, positive)
        loss.backward()
        grads.append((loss.detach(), u.grad, items.grad))
    for fast, full in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    assert grads[0][0].item() > 0.5


def test_forward_traces_with_the_ebc_reading_the_batch_directly() -> None:
    """TrainPipelineSparseDist pipelines the EBC only if fx sees it called on batch.features."""
    model = _model()
    graph = Tracer(leaf_modules=["dense", "sparse.ebc"]).trace(model)
    calls = [n for n in graph.nodes if n.op == "call_module"]
    assert [n.target for n in calls] == ["sparse.ebc", "dense"]
    (arg,) = calls[0].args
    assert arg.op == "call_function" and arg.args[1] == "features"
    assert arg.args[0].op == "placeholder"


def test_meta_device_builds() -> None:
    cfg = _config()
    lazy = build_model(cfg, sparse_device="meta")
    assert all(p.is_meta for p in lazy.sparse.ebc.parameters())
    assert not any(p.is_meta for p in lazy.dense.parameters())
    everything = build_model(cfg, device="meta")
    assert all(p.is_meta for p in everything.parameters())


def test_config_rejects_unknown_loss_term() -> None:
    with pytest.raises(ConfigError, match="model.loss.fixed_weights.*student/cvr"):
        _config(loss={"fixed_weights": {"student/cvr": 1.0}})


@pytest.fixture
def process_group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_sharded_pipelined_training_and_retrieval(process_group: None) -> None:
    """Under DMP (one gloo rank, table-wise EBC) and TrainPipelineSparseDist the EBC call is
    pipelined and the DDP-wrapped dense part trains; once the pipeline lets go of the model,
    retrieval vectors still give the fused score."""
    cfg = _config()
    torch.manual_seed(0)
    model = build_model(cfg, sparse_device="meta")
    apply_optimizer_in_backward(torch.optim.Adagrad, model.sparse.ebc.parameters(), {"lr": 0.05})
    constraints = {
        c.name: ParameterConstraints(sharding_types=["table_wise"])
        for c in cfg.features.embedding_bag_configs()
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=1, compute_device="cpu"), constraints=constraints
    )
    plan = planner.collective_plan(model, [EmbeddingBagCollectionSharder()], dist.group.WORLD)
    dmp = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan)
    dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    opt = KeyedOptimizerWrapper(dense, lambda params: torch.optim.Adam(params, lr=1e-2))
    pipeline = TrainPipelineSparseDist(dmp, opt, torch.device("cpu"))

    batches = iter([_batch(seed=s) for s in range(5)])
    outputs = [pipeline.progress(batches) for _ in range(4)]
    ebc = dmp.module.sparse.ebc
    assert type(ebc).__name__ == "ShardedEmbeddingBagCollection"
    assert getattr(ebc, "is_pipelined", False), "the EBC call was not pipelined"
    assert int(dmp.module.train_step) == 4
    assert all(torch.isfinite(o.losses[t]) for o in outputs for t in model.loss_terms)

    plain = pipeline.detach()
    plain.eval()
    batch = _batch(seed=9)
    with torch.no_grad():
        _, out = plain(batch)
        q = plain.module.query_vector(_subset(batch.features, USER_KEYS + CONTEXT_KEYS))
        i = plain.module.item_vector(_subset(batch.features, ITEM_KEYS))
    torch.testing.assert_close((q * i).sum(-1), out.scores.fused, rtol=1e-5, atol=1e-5)
