"""Smoke tests of benchmarks/ at tiny sizes. No test asserts a time: they check that each piece
runs, that the statistics and accounting are right, and that the report renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

# benchmarks/ is a directory of scripts at the repository root, not an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support import tiny_config  # noqa: E402

from benchmarks.common import REPO, machine_info, percentiles_ms, summarise  # noqa: E402
from benchmarks.membw import bytes_per_sample, copy_bandwidth_gbs  # noqa: E402
from benchmarks.report import render  # noqa: E402
from benchmarks.retrieval import bench_retrieval, recall_at_k  # noqa: E402
from benchmarks.roofline import (  # noqa: E402
    flops_per_sample,
    roofline_shares,
    step_breakdown,
    step_gemms,
    time_gemms,
)
from benchmarks.run import QUICK_OVERRIDES, SPARSE_QUICK_OVERRIDES, _first_rows  # noqa: E402
from benchmarks.sparse_batches import random_batches, zipf_ids  # noqa: E402
from benchmarks.training_runs import ratios, run_with_timeout, scaling  # noqa: E402
from dmmp_rec.config import load_config  # noqa: E402
from dmmp_rec.data.loader import loader_for_split  # noqa: E402

CONFIG = REPO / "configs/bench.yaml"
SPARSE_CONFIG = REPO / "configs/bench_sparse.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from dmmp_rec.data.synthetic.generate import generate_world

    data = tmp_path_factory.mktemp("bench_world")
    overrides = QUICK_OVERRIDES + [f"data.path={data}"]
    cfg = load_config(CONFIG, overrides)
    generate_world(cfg, data, progress=False)
    return cfg, overrides


def test_summarise_and_percentiles() -> None:
    s = summarise([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (3.0, 1.0, 10.0, 5)
    p = percentiles_ms([0.001] * 99 + [0.1])
    assert p["p50_ms"] == pytest.approx(1.0)
    assert p["p99_ms"] > 1.0 and p["n"] == 100
    with pytest.raises(ValueError):
        summarise([])


def test_machine_info_names_the_stack() -> None:
    m = machine_info()
    assert m["cpu_count"] >= 1 and m["mem_total_gib"] > 0
    assert m["torch"] == torch.__version__ and m["torchrec"] is not None
    assert len(m["loadavg_1_5_15"]) == 3


def test_copy_bandwidth_is_positive() -> None:
    bw = copy_bandwidth_gbs(mbytes=8, reps=2)
    assert len(bw) == 2 and all(b > 0 for b in bw)


def test_bytes_per_sample_accounting() -> None:
    cfg = load_config(CONFIG)
    res = bytes_per_sample(cfg, {"user_hist_items": 10.0})
    # single-valued dim-64 feature: 1 row * (64*4 + 8) lookup + (4*64 + 2)*4 update + 2*64*4
    one = 64 * 4 + 8 + (4 * 64 + 2) * 4 + 2 * 64 * 4
    assert res["tables"]["user_id"]["bytes"] == pytest.approx(one)
    hist = 10 * (64 * 4 + 8) + 10 * (4 * 64 + 2) * 4 + 2 * 64 * 4
    assert res["tables"]["user_hist_items"]["bytes"] == pytest.approx(hist)
    assert res["bytes_per_sample"] == pytest.approx(11 * one + hist)


def test_recall_and_ratios() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[1, 2, 9, -1], [5, 6, 7, 8]])
    assert recall_at_k(approx, exact) == pytest.approx((2 + 4) / 8)
    runs = [
        {"system": "dmmp", "world_size": 2, "samples_per_s_summary": {"median": 300.0}},
        {"system": "replica", "world_size": 2, "samples_per_s_summary": {"median": 100.0}},
        {"system": "rechub_dssm", "world_size": 2, "samples_per_s_summary": {"median": 150.0}},
        {"system": "replica", "world_size": 1, "error": "exit 1"},
    ]
    r = ratios(runs)
    assert r["dmmp/replica@2"] == 3.0 and r["dmmp/best_other@2"] == 2.0


def test_retrieval_on_clustered_vectors_reaches_recall() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    items = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(
        np.float32
    )
    queries = rng.normal(size=(60, 16)).astype(np.float32)
    res = bench_retrieval(items, queries[:30], queries[30:], target_recall=0.9, reps=5)
    assert res["items"] == 3000 and res["exact"]["qps_batch"]["n"] == 5
    assert res["approx"]["tuning_recall"] >= 0.9
    assert 0.0 <= res["approx"]["recall_at_100"] <= 1.0
    assert res["exact"]["single_query"]["n"] == 30


def test_train_worker_replica_smoke(tiny, tmp_path: Path) -> None:
    cfg, overrides = tiny
    out = tmp_path / "replica.json"
    cmd = [sys.executable, str(REPO / "benchmarks/train_worker.py"), "--system", "replica"]
    cmd += ["--config", str(CONFIG), "--out", str(out), "--warmup", "1", "--steps", "1"]
    cmd += ["--reps", "2", *overrides]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=120)
    res = json.loads(out.read_text())
    assert res["world_size"] == 1 and res["global_batch"] == cfg.data.batch_size
    assert len(res["samples_per_s"]) == 2 and all(s > 0 for s in res["samples_per_s"])


@pytest.mark.parametrize("kind", ["ple_esmm", "dssm"])
def test_rechub_models_train_on_our_batches(tiny, kind: str) -> None:
    from benchmarks.rechub import RechubBatch, RechubModel, rechub_optimizer

    cfg, _ = tiny
    batch = next(iter(loader_for_split(cfg, "train")))
    model = RechubModel(cfg, kind)
    hist = RechubBatch(batch, cfg).x["user_hist_items"]
    assert hist.shape[0] == batch.size and hist.dim() == 2
    opt = rechub_optimizer(model, cfg)
    loss, _ = model(RechubBatch(batch, cfg))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kind", ["ple_esmm", "dssm"])
def test_the_benchmark_rechub_model_is_the_shared_adapter_at_mixed_widths(
    kind: str, tiny_world: Path, tmp_path: Path
) -> None:
    """configs/synthetic.yaml has features of widths 4, 8 and 16: torch-rechub concatenates the
    per-feature embeddings, so a model built at our per-feature widths (the benchmark's old
    copy of the adapter) fails on its first batch; the shared adapter gives every table the
    mean width and the benchmark's step trains."""
    from benchmarks.rechub import RechubBatch, RechubModel, rechub_optimizer
    from dmmp_rec.compare.rechub.models import RechubPeer, input_specs, uniform_dim

    cfg = tiny_config(tiny_world, tmp_path)
    assert len({s.dim for s in input_specs(cfg)}) == 3
    model = RechubModel(cfg, kind)  # type: ignore[arg-type]
    assert isinstance(model.peer, RechubPeer) and model.net is model.peer.model
    tables = model.net.embedding.embed_dict
    assert sorted(tables) == sorted(s.name for s in input_specs(cfg))
    assert {t.embedding_dim for t in tables.values()} == {uniform_dim(cfg)}
    opt = rechub_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == cfg.train.dense_lr
    batch = next(iter(loader_for_split(cfg, "train")))
    before = [p.detach().clone() for p in model.parameters()]
    loss, out = model(RechubBatch(batch, cfg))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(v.shape == (batch.size,) for v in out.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_replica_matches_model_shapes(tiny) -> None:
    from benchmarks.replica import ReplicaBatch, ReplicaModel

    cfg, _ = tiny
    batch = next(iter(loader_for_split(cfg, "train")))
    loss, out = ReplicaModel(cfg)(ReplicaBatch(batch, cfg.features.names))
    assert out.scores.pctr.shape == (batch.size,) and out.scores.gate.shape == (batch.size, 2)
    assert torch.isfinite(loss)


def test_inference_bench_on_untrained_model(tiny) -> None:
    from benchmarks.inference import bench_inference
    from benchmarks.trained import item_kjts, user_kjts
    from dmmp_rec.model.factory import build_model

    cfg, _ = tiny
    model = build_model(cfg).eval()
    users = user_kjts(cfg, np.arange(8), 8)[0]
    items = item_kjts(cfg, 8, 8)[0]
    assert _first_rows(users, 3).stride() == 3
    res = bench_inference(
        cfg,
        model,
        {1: _first_rows(users, 1), 8: users},
        {8: items},
        {1: 3, 8: 3},
        with_compile=False,
    )
    assert set(res["user"]) == {"eager", "eager_plain", "eager_int8", "exported", "exported_int8"}
    assert set(res["item"]) == {"eager", "eager_plain", "eager_int8"}
    assert res["user"]["exported"][8]["n"] == 3 and res["item"]["eager"][8]["p99_ms"] > 0
    assert res["user"]["exported_int8"][1]["n"] == 3
    for sizes in res["table_bytes"].values():
        assert sizes["int8"] < sizes["fp32"] / 1.3
    # the exported user side computes the model's own query vectors
    from benchmarks.inference import split_inputs, tables_of
    from dmmp_rec.serving.item_side import ItemSide
    from dmmp_rec.serving.user_side import UserSide

    side = UserSide(
        cfg.features.group("user"), cfg.features.group("context"), tables_of(model), model.student
    )
    with torch.no_grad():
        q, _ = side(*split_inputs(users), torch.zeros(1))
        torch.testing.assert_close(q, model.query_vector(users), atol=1e-5, rtol=1e-4)
        item_side = ItemSide(cfg.features.group("item"), tables_of(model), model.student)
        i = item_side(*split_inputs(items))
        torch.testing.assert_close(i, model.item_vector(items), atol=1e-5, rtol=1e-4)


def test_report_renders_every_section() -> None:
    result = {
        "command": "run.py",
        "config": "configs/bench.yaml",
        "started": "now",
        "total_s": 1.0,
        "machine": machine_info(),
        "train": {
            "runs": [
                {
                    "system": "dmmp",
                    "world_size": 2,
                    "global_batch": 8,
                    "build_s": 1.0,
                    "samples_per_s_summary": summarise([1.0, 2.0, 3.0]),
                },
                {"system": "replica", "world_size": 2, "error": "exit 1"},
            ],
            "ratios": {"dmmp/best_other@2": 2.5},
        },
        "membw": {
            "copy_gbs": summarise([10.0]),
            "bytes_per_sample": 1000.0,
            "limit_samples_per_s": 10_000_000,
            "share_of_limit": {"dmmp@2": 0.01},
        },
        "inference": {
            "user": {"exported_int8": {1: {"p50_ms": 0.2, "p99_ms": 0.3}}},
            "table_bytes": {"user": {"fp32": 6400, "int8": 2400}},
        },
        "planner": {
            "label": "PLANNER ESTIMATES",
            "config": "c",
            "plan_config": "p",
            "estimates": [{"world_size": 8, "error": "does not fit"}],
        },
    }
    result["train"]["runs"][0]["peak_rss_gib_per_process"] = [1.25, 0.5]
    result["train"]["scaling"] = {"dmmp": {"speedup": 1.5, "efficiency": 0.75}}
    rates = {k: summarise([10.0, 20.0]) for k in ("1_thread", "2_threads", "2_processes")}
    result["roofline"] = {
        "batch": 8,
        "mflop_per_sample": 9.9,
        "distinct_gemms": 3,
        "gemm_gflops": rates,
        "roofline_samples_per_s": {"1_thread": 1000},
        "share_of_roofline": {"dmmp@2": 0.8},
    }
    result["sparse"] = {
        **result["train"],
        "config": "configs/bench_sparse.yaml",
        "rows_total": 22_000_000,
        "table_gib": 1.3,
        "hist_len": 50,
        "mflop_per_sample": 0.3,
        "membw": result["membw"],
    }
    md = render(result)
    assert "| dmmp | 2 | 8 | 2 (1-3) | n/a | 1.25 / 0.50 | 1.0 |" in md
    assert "dmmp 1.5x (75%)" in md and "dmmp@2 80%" in md and "22,000,000 embedding rows" in md
    assert "failed: exit 1" in md and "dmmp/best_other@2 = 2.5" in md
    assert "PLANNER ESTIMATES" in md and "no plan: does not fit" in md
    assert "| user | exported_int8 | 1 | 0.200 | 0.300 |" in md
    assert "user side 6,400 -> 2,400 (2.67x smaller)" in md


def test_scaling_and_roofline_shares() -> None:
    runs = [
        {"system": "dmmp", "world_size": 1, "samples_per_s_summary": {"median": 100.0}},
        {"system": "dmmp", "world_size": 2, "samples_per_s_summary": {"median": 150.0}},
        {"system": "replica", "world_size": 2, "samples_per_s_summary": {"median": 50.0}},
    ]
    assert scaling(runs) == {"dmmp": {"speedup": 1.5, "efficiency": 0.75}}
    roof = {
        "gemm_gflops": {"1_thread": {"median": 1.0}, "2_processes": {"median": 3.0}},
        "mflop_per_sample_by_system": {"dmmp": 5.0, "replica": 10.0},
    }
    # 1 GFLOP/s over 5 MFLOP = 200 samples/s; 3 GFLOP/s over 5 / 10 MFLOP = 600 / 300
    assert roofline_shares(roof, runs) == {"dmmp@1": 0.5, "dmmp@2": 0.25, "replica@2": 0.167}
    # batch 10 per process, 10 ms of CPU per sample at 1 process -> 100 ms a step, 50 of them
    # products (5 MFLOP x 10 at 1 GFLOP per CPU second), the dense step alone 80 ms; at 2
    # processes 12.5 ms per sample -> 125 ms a step, the same 50 ms of products
    roof.update(
        flop_per_sample=5e6,
        gemm_gflops_per_cpu_s_1_thread={"median": 1.0},
        dense_step={"cpu_ms": {"median": 80.0}},
    )
    for run, cpu in zip(runs, (10_000.0, 12_500.0, 20_000.0), strict=True):
        run["global_batch"] = 10 * run["world_size"]
        run["cpu_us_per_sample_summary"] = {"median": cpu}
    split = step_breakdown(roof, runs)
    assert split["dmmp@1"] == {
        "cpu_ms_per_step": 100.0,
        "matrix_products": 0.5,
        "rest_of_dense_step": 0.3,
        "tables_pipeline_collectives": 0.2,
    }
    assert split["dmmp@2"]["cpu_ms_per_step"] == 125.0
    assert split["dmmp@2"]["matrix_products"] == 0.4 and "replica@2" not in split


def test_candidates_cost_only_the_layers_above_the_first_per_pair() -> None:
    """Exact FLOP accounting of the cheap candidate scoring on a small teacher: one more
    candidate per row adds the teacher above its first layers (no first-layer product), and
    nothing on the student side (its towers run once)."""
    base = [
        "model.teacher.kind=ple",
        "model.teacher.num_levels=2",
        "model.teacher.expert_dims=[16]",
        "model.teacher.tower_dims=[8]",
        "model.student.tower_dims=[16]",
        "model.student.out_dim=8",
        "model.student.gate_dims=[8]",
    ]
    counts = {
        r: flops_per_sample(load_config(CONFIG, [*base, f"model.loss.distill_candidates={r}"]), 64)
        for r in (2, 3)
    }
    # level 2 of the PLE: 4 experts 16 -> 16 and 2 gates 16 -> 3; towers 16 -> 8 -> 1 twice
    per_pair = 2 * (4 * 16 * 16 + 2 * 16 * 3 + 2 * (16 * 8 + 8 * 1))
    assert counts[3]["flop_per_sample"] - counts[2]["flop_per_sample"] == per_pair


def test_recorded_products_are_the_counted_flops() -> None:
    cfg = load_config(CONFIG, QUICK_OVERRIDES)
    gemms = step_gemms(cfg, 64)
    total = sum(2 * m * k * n * c for (m, k, n, _, _), c in gemms.items())
    assert total / 64 / 1e6 == pytest.approx(flops_per_sample(cfg, 64)["mflop_per_sample"], 1e-3)
    rate = time_gemms(dict(gemms), threads=1, seconds=0.05)
    assert rate["gflops"] > 0 and rate["passes"] >= 1


def test_sparse_batches_follow_the_config() -> None:
    cfg = load_config(SPARSE_CONFIG, SPARSE_QUICK_OVERRIDES)
    a = random_batches(cfg, 2, hist_len=10, rank=0)
    assert (
        random_batches(cfg, 2, hist_len=10, rank=0)[1]
        .features.values()
        .equal(a[1].features.values())
    )
    assert (
        not random_batches(cfg, 1, hist_len=10, rank=1)[0]
        .features.values()
        .equal(a[0].features.values())
    )
    kjt = a[0].features
    assert kjt.keys() == cfg.features.names and a[0].size == cfg.data.batch_size
    for spec in cfg.features.all:
        jt = kjt[spec.name]
        assert int(jt.values().min()) >= 0 and int(jt.values().max()) < spec.cardinality
        lengths = jt.lengths()
        if spec.multi_valued:
            assert int(lengths.min()) >= 5 and int(lengths.max()) <= 15
        else:
            assert bool((lengths == 1).all())
    assert bool((a[0].conversion <= a[0].click).all())
    # Zipf: the hottest id is drawn far more often than uniform, and the ranks are scattered
    ids = zipf_ids(np.random.default_rng(0), 100_000, 200_000, 0.9)
    counts = np.bincount(ids, minlength=100_000)
    hottest = np.argsort(counts)[::-1][:3]
    assert counts.max() > 50 * counts.mean() and np.diff(np.sort(hottest)).min() > 1000
    assert len(np.unique((np.arange(1000) * 2_654_435_761) % 1000)) == 1000


def test_train_worker_draws_batches_in_memory(tmp_path: Path) -> None:
    out = tmp_path / "dmmp.json"
    cmd = [sys.executable, str(REPO / "benchmarks/train_worker.py"), "--system", "dmmp"]
    cmd += ["--config", str(SPARSE_CONFIG), "--out", str(out), "--warmup", "1", "--steps", "1"]
    cmd += ["--reps", "2", "--random-batches", "6", *SPARSE_QUICK_OVERRIDES]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=300)
    res = json.loads(out.read_text())
    assert res["random_batches_hist_len"] == 6 and len(res["samples_per_s"]) == 2
    assert len(res["peak_rss_gib_per_process"]) == 1 and res["peak_rss_gib_per_process"][0] > 0
    assert len(res["cpu_us_per_sample"]) == 2 and min(res["cpu_us_per_sample"]) > 0


def test_a_hung_job_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    assert run_with_timeout([sys.executable, "-c", "pass"], 30) == 0
    assert run_with_timeout([sys.executable, "-c", "raise SystemExit(3)"], 30) == 3
    assert run_with_timeout([sys.executable, "-c", script], 3) == "timeout"
    child = int(pid_file.read_text())
    for _ in range(50):  # the orphan is reaped by init shortly after the kill
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the job's child survived the timeout")
