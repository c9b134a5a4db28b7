"""Full-corpus retrieval metrics against a brute-force recomputation on the tiny world."""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import ndcg_score
from support import CONFIG, tiny_config, tiny_overrides

from dmmp_rec.cli import main
from dmmp_rec.data.catalogue import item_side, user_side
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.data.schema import split_files
from dmmp_rec.data.synthetic.world import GroundTruth
from dmmp_rec.eval.retrieval_eval import RetrievalOptions, evaluate_retrieval
from dmmp_rec.model import build_model

KS = [5, 20]


@pytest.fixture(scope="module")
def setup(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cfg = tiny_config(tiny_world, tmp_path_factory.mktemp("run"))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return cfg, model


def _relevant(world: Path, label: str) -> dict[int, set[int]]:
    t = pq.read_table(split_files(world, "test"), columns=["user_id", "item_id", label])
    rel: dict[int, set[int]] = defaultdict(set)
    for u, i, y in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
        if y:
            rel[u].add(i)
    return rel


def _recall(top: np.ndarray, users: np.ndarray, rel: dict[int, set[int]], k: int) -> float:
    vals = [
        len(set(top[r, :k].tolist()) & rel[u]) / len(rel[u])
        for r, u in enumerate(users)
        if rel.get(u)
    ]
    return float(np.mean(vals))


def test_model_and_reference_metrics_equal_brute_force(setup, tiny_world: Path) -> None:  # noqa: ANN001
    cfg, model = setup
    truth = GroundTruth.load(tiny_world)
    opts = RetrievalOptions(ks=KS, oracle_users=10**6, batch_size=700, seed=1)
    report = evaluate_retrieval(model, cfg, truth, opts, progress=False).to_dict()
    r, refs = report["retrieval"], report["references"]

    test = pq.read_table(split_files(tiny_world, "test"), columns=["user_id"])
    users = np.unique(test.column("user_id").to_numpy())
    items = pq.read_table(tiny_world / "items.parquet")
    people = pq.read_table(tiny_world / "users.parquet").take(users)  # row i = user i
    with torch.no_grad():
        iv = model.item_vector(table_kjt(items, item_side(cfg.features))).numpy()
        qv = model.query_vector(table_kjt(people, user_side(cfg.features))).numpy()
    scores = qv @ iv.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, : max(KS)]
    clicks, convs = _relevant(tiny_world, "click"), _relevant(tiny_world, "conversion")
    assert r["users"] == len(users) and r["items"] == items.num_rows == 3000
    assert r["users_with_clicks"] == sum(1 for u in users if clicks.get(u))
    assert r["oracle_sample_users"] == len(users)  # the sample is everyone here

    train = pq.read_table(split_files(tiny_world, "train"), columns=["item_id", "click"])
    counts = np.bincount(
        train.column("item_id").to_numpy()[train.column("click").to_numpy() > 0], minlength=3000
    )
    popular = np.argsort(-counts, kind="stable")[: max(KS)]
    pop_top = np.broadcast_to(popular, top.shape)

    uu, ii = np.meshgrid(users, np.arange(3000), indexing="ij")
    true_ctr = truth.pctr(uu.ravel(), ii.ravel()).reshape(uu.shape)  # users.parquet hour
    true_ctcvr = true_ctr * truth.pcvr(uu.ravel(), ii.ravel()).reshape(uu.shape)
    best = -np.sort(-true_ctcvr, axis=1)
    for k in KS:
        key = str(k)
        for scope in ("all_users", "sample"):
            assert r[scope]["recall_click"][key] == pytest.approx(_recall(top, users, clicks, k))
            assert r[scope]["recall_conversion"][key] == pytest.approx(
                _recall(top, users, convs, k)
            )
        pop = refs["popularity"]["all_users"]
        assert pop["recall_click"][key] == pytest.approx(_recall(pop_top, users, clicks, k))
        s = r["sample"]
        assert s["ndcg_pctcvr"][key] == pytest.approx(ndcg_score(true_ctcvr, scores, k=k), rel=1e-4)
        got = np.take_along_axis(true_ctcvr, top[:, :k], 1)
        assert s["bait_share"][key] == pytest.approx(truth.is_bait[top[:, :k]].mean())
        assert s["exp_conversions_ratio"][key] == pytest.approx(
            np.mean(got.sum(1) / best[:, :k].sum(1)), rel=1e-4
        )
        # platform totals: sums over the users, not means of ratios
        assert s["exp_conversions_total"][key] == pytest.approx(got.sum(), rel=1e-4)
        got_ctr = np.take_along_axis(true_ctr, top[:, :k], 1)
        assert s["exp_clicks_total"][key] == pytest.approx(got_ctr.sum(), rel=1e-4)
        oracle = refs["oracle_pctcvr"]["sample"]
        assert oracle["ndcg_pctcvr"][key] == pytest.approx(1.0)
        assert oracle["exp_conversions_ratio"][key] == pytest.approx(1.0)
        assert refs["oracle_pctr"]["sample"]["exp_clicks_ratio"][key] == pytest.approx(1.0)
        oracle_top = np.argsort(-true_ctr, axis=1, kind="stable")[:, :k]
        assert refs["oracle_pctr"]["sample"]["bait_share"][key] == pytest.approx(
            truth.is_bait[oracle_top].mean()
        )
    # the story the references tell: ranking by clicks pulls in baits, by conversions does not
    assert (
        refs["oracle_pctr"]["sample"]["bait_share"]["5"]
        > refs["oracle_pctcvr"]["sample"]["bait_share"]["5"]
    )


def test_blocked_true_scores_equal_the_ground_truth_per_user(tiny_world: Path) -> None:
    truth = GroundTruth.load(tiny_world)
    users = np.array([0, 17, 1999])
    items = np.array([5, 0, 2999, 42])  # any subset, any order
    ctr, ctcvr = truth.score_matrix(users, items)
    for r, u in enumerate(users):
        pair_users = np.full(len(items), u)
        # the pairwise formula (the one the generator samples from), at the evaluation hour
        np.testing.assert_allclose(ctr[r], truth.pctr(pair_users, items), rtol=1e-5)
        np.testing.assert_allclose(ctcvr[r], truth.pctcvr(pair_users, items), rtol=1e-5)
        np.testing.assert_allclose(ctr[r], truth.score_all_items(int(u), "pctr")[items], rtol=1e-5)


def test_data_without_catalogues_or_truth_uses_the_split(
    setup, tiny_world: Path, tmp_path: Path
) -> None:  # noqa: ANN001, E501
    cfg, model = copy.deepcopy(setup)
    bare = tmp_path / "bare"
    bare.mkdir()
    for split in ("train", "test"):
        (bare / split).symlink_to(tiny_world / split)
    cfg.data.path = str(bare)
    opts = RetrievalOptions(ks=[5], oracle_users=100)
    report = evaluate_retrieval(model, cfg, None, opts, progress=False).to_dict()
    r = report["retrieval"]
    test = pq.read_table(split_files(bare, "test"), columns=["item_id", "user_id"])
    assert r["catalogue"] == "first rows of the test split"
    assert r["items"] == len(np.unique(test.column("item_id").to_numpy()))
    assert r["oracle_sample_users"] == 0 and "sample" not in r
    assert set(report["references"]) == {"popularity"}
    assert 0.0 <= r["all_users"]["recall_click"]["5"] <= 1.0


def test_cli_rejects_bad_cutoffs(tiny_world: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    argv = ["eval", "--config", str(CONFIG), "--checkpoint", str(tmp_path), "--k", "10,0"]
    assert main([*argv, *tiny_overrides(tiny_world, tmp_path)]) == 2
    assert "--k: must be comma-separated integers >= 1, got '10,0'" in capsys.readouterr().err


def test_frontier_ends_and_middle_are_the_single_towers_and_the_fused_score(
    setup, tiny_world: Path
) -> None:  # noqa: ANN001
    cfg, model = setup
    truth = GroundTruth.load(tiny_world)
    betas = [-float("inf"), -1.0, 0.0, 2.0, float("inf")]
    opts = RetrievalOptions(ks=KS, oracle_users=60, seed=3, betas=betas)
    report = evaluate_retrieval(model, cfg, truth, opts, progress=False).to_dict()
    points = report["frontier"]["points"]
    assert [p["beta"] for p in points] == betas
    # beta = 0: exactly today's fused retrieval (the model's own sample metrics)
    middle = points[2]
    for metric in ("exp_clicks_ratio", "exp_conversions_ratio", "bait_share", "ndcg_pctcvr"):
        assert middle[metric] == report["retrieval"]["sample"][metric]
    assert middle["mean_gate_conversion"] == pytest.approx(
        report["retrieval"]["mean_gate"][1], rel=1e-5
    )

    # beta = -inf / +inf: the click / conversion tower alone, recomputed by brute force
    test = pq.read_table(split_files(tiny_world, "test"), columns=["user_id"])
    users = np.unique(test.column("user_id").to_numpy())
    sample = users[np.random.default_rng(3).choice(len(users), 60, replace=False)]
    sample = np.sort(sample)
    items = pq.read_table(tiny_world / "items.parquet")
    people = pq.read_table(tiny_world / "users.parquet").take(sample)
    with torch.no_grad():
        g = model.sparse.lookup(table_kjt(people, user_side(cfg.features)), ("user", "context"))
        i = model.sparse.lookup(table_kjt(items, item_side(cfg.features)), ("item",))["item"]
        u = model.student.user_embedding(g["user"], g["context"])
        i_c, i_v = model.student.item_embeddings(i)
    ctr, ctcvr = truth.score_matrix(sample, np.arange(3000))
    for point, towers in ((points[0], i_c), (points[-1], i_v)):
        top = np.argsort(-(u @ towers.T).numpy(), axis=1, kind="stable")[:, : max(KS)]
        for k in KS:
            got_ctr = np.take_along_axis(ctr, top[:, :k], 1).sum(1)
            best_ctr = -np.sort(-ctr, axis=1)[:, :k].sum(1)
            assert point["exp_clicks_ratio"][str(k)] == pytest.approx(
                np.mean(got_ctr / best_ctr), rel=1e-4
            )
            got_v = np.take_along_axis(ctcvr, top[:, :k], 1).sum(1)
            best_v = -np.sort(-ctcvr, axis=1)[:, :k].sum(1)
            assert point["exp_conversions_ratio"][str(k)] == pytest.approx(
                np.mean(got_v / best_v), rel=1e-4
            )
    assert points[0]["mean_gate_conversion"] == 0.0 and points[-1]["mean_gate_conversion"] == 1.0
    # the learned gate's global knob in the oracle-gate bound is the frontier's best point
    bound = report["oracle_gate"]
    assert bound["k"] == 20 and bound["betas"] == betas
    for row in bound["platform_total"]["rates"]:
        values = [p["exp_clicks_total"]["20"] + row["rate"] * p["exp_conversions_total"]["20"]
                  for p in points]  # fmt: skip
        assert row["global_learned"] == pytest.approx(max(values), rel=1e-6)
        assert row["oracle"] >= row["global_flat"] - 1e-9
        assert row["oracle_learned"] >= row["global_learned"] - 1e-9
        assert set(row["best_beta_correlation"]) == {"propensity", "purchase_rho"}
    assert not any(name.startswith("flat") for name in report["references"])
    gates = [p["mean_gate_conversion"] for p in points]
    assert gates == sorted(gates)


def test_two_tower_is_a_point_without_a_frontier(tiny_world: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_world, tmp_path, "model.variant=two_tower")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    truth = GroundTruth.load(tiny_world)
    report = evaluate_retrieval(
        model, cfg, truth, RetrievalOptions(ks=KS, oracle_users=30), progress=False
    ).to_dict()
    assert "frontier" not in report
    assert report["retrieval"]["sample"]["exp_clicks_ratio"]["5"] > 0


def test_validation_sample_never_meets_the_test_sample(setup, tiny_world: Path) -> None:  # noqa: ANN001
    from dmmp_rec.data.catalogue import split_users
    from dmmp_rec.eval.samples import oracle_sample

    cfg, model = setup
    test_users, val_users = split_users(cfg, "test"), split_users(cfg, "val")
    assert np.intersect1d(test_users, val_users).size > 0  # the days share users
    for n in (10, 80, 10**6):
        test = oracle_sample("test", test_users, None, n, seed=5)
        val = oracle_sample("val", val_users, test_users, n, seed=5)
        assert np.intersect1d(test, val).size == 0
        assert len(test) == min(n, len(test_users)) and len(val) > 0
        assert set(val) <= set(val_users)
    truth = GroundTruth.load(tiny_world)
    opts = RetrievalOptions(ks=KS, oracle_users=40, seed=5, split="val", betas=[0.0])
    report = evaluate_retrieval(model, cfg, truth, opts, progress=False).to_dict()
    assert report["retrieval"]["split"] == "val"
    assert report["retrieval"]["oracle_sample_users"] == 40
    with pytest.raises(ValueError, match="test users"):
        oracle_sample("val", val_users, None, 5, seed=0)


def test_teacher_as_a_full_catalogue_retriever_on_a_subset(setup, tiny_world: Path) -> None:  # noqa: ANN001
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from dmmp_rec.data.synthetic.cross import HistoryCrosses
    from dmmp_rec.eval.teacher_retrieval import teacher_subset

    cfg, model = setup
    truth = GroundTruth.load(tiny_world)
    betas = [-float("inf"), 0.0, float("inf")]
    opts = RetrievalOptions(ks=KS, oracle_users=50, seed=2, betas=betas, teacher_users=12)
    report = evaluate_retrieval(model, cfg, truth, opts, progress=False).to_dict()
    section = report["teacher_retrieval"]
    assert section["users"] == 12
    sample = report["retrieval"]["oracle_sample_users"]
    assert sample == 50

    test = pq.read_table(split_files(tiny_world, "test"), columns=["user_id"])
    users = np.unique(test.column("user_id").to_numpy())
    full = np.sort(users[np.random.default_rng(2).choice(len(users), 50, replace=False)])
    subset = teacher_subset(full, 12, 2)
    items = pq.read_table(tiny_world / "items.parquet")
    people = pq.read_table(tiny_world / "users.parquet").take(subset)
    with torch.no_grad():
        g = model.sparse.lookup(table_kjt(people, user_side(cfg.features)), ("user", "context"))
        i = model.sparse.lookup(table_kjt(items, item_side(cfg.features)), ("item",))["item"]
        scores = []
        crosses = HistoryCrosses.from_catalogues(tiny_world, cfg.features)
        names = [f.name for f in cfg.features.group("cross")]
        for r in range(len(subset)):
            ids = crosses(np.full(3000, subset[r]), np.arange(3000))
            kjt = KeyedJaggedTensor(
                keys=names,
                values=torch.from_numpy(np.concatenate([ids[n] for n in names])),
                lengths=torch.ones(3000 * len(names), dtype=torch.int32),
            )
            cross = model.sparse.lookup(kjt, ("cross",))["cross"]  # each pair through the EBC
            parts = [g["user"][r : r + 1].expand(3000, -1), i]
            parts += [g["context"][r : r + 1].expand(3000, -1), cross]
            scores.append(model.teacher(torch.cat(parts, dim=1)).pctcvr.numpy())
    _, ctcvr = truth.score_matrix(subset, np.arange(3000))
    top = np.argsort(-np.stack(scores), axis=1, kind="stable")
    for k in KS:
        got = np.take_along_axis(ctcvr, top[:, :k], 1).sum(1)
        best = -np.sort(-ctcvr, axis=1)[:, :k].sum(1)
        assert section["teacher"]["exp_conversions_ratio"][str(k)] == pytest.approx(
            np.mean(got / best), rel=1e-4
        )
        # the student's best point is the best of beta 0 and the grid, on the same users
        options = [section["student"]["exp_conversions_ratio"][str(k)]]
        assert section["student_best"][str(k)] >= max(options) - 1e-12
        assert section["student_best_beta"][str(k)] in (0.0, *betas)
    # the main sample's numbers are untouched by the subset
    assert "teacher_sample" not in report["retrieval"]
