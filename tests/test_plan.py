"""Sharding plans: plan configs, the offline planner, our plan JSON and `dmmp-rec plan`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torchrec.distributed.types import EnumerableShardingSpec, ShardingPlan

from dmmp_rec.cli import main
from dmmp_rec.config import ConfigError, load_config
from dmmp_rec.distributed.planning.config import GIB, PlanError, load_plan_config
from dmmp_rec.distributed.planning.io import load_plan, save_plan
from dmmp_rec.distributed.planning.planner import PlanningModel, make_plan, make_sharders

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "configs/synthetic.yaml"
PRODUCTION = ROOT / "configs/production.yaml"
CPU_2 = ROOT / "configs/plans/cpu_2.yaml"
GPU_64 = ROOT / "configs/plans/gpu_64.yaml"


@pytest.fixture(scope="module")
def synthetic():
    return load_config(SYNTHETIC)


@pytest.fixture(scope="module")
def cpu_result(synthetic):
    return make_plan(synthetic, load_plan_config(CPU_2), 2, "cpu")


@pytest.fixture(scope="module")
def gpu_result():
    return make_plan(load_config(PRODUCTION), load_plan_config(GPU_64), 64, "cuda")


def _write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _assert_same_plan(a: ShardingPlan, b: ShardingPlan) -> None:
    assert a.plan.keys() == b.plan.keys()
    for path in a.plan:
        ta, tb = a.plan[path], b.plan[path]
        assert list(ta) == list(tb)
        for name in ta:
            pa, pb = ta[name], tb[name]
            assert (pa.sharding_type, pa.compute_kernel, pa.ranks) == (
                pb.sharding_type,
                pb.compute_kernel,
                pb.ranks,
            ), name
            assert pa.cache_params == pb.cache_params, name
            if pa.sharding_spec is None:
                assert pb.sharding_spec is None, name
                continue
            sa, sb = pa.sharding_spec.shards, pb.sharding_spec.shards
            assert [(s.shard_offsets, s.shard_sizes, str(s.placement)) for s in sa] == [
                (s.shard_offsets, s.shard_sizes, str(s.placement)) for s in sb
            ], name
            assert pa == pb, name


def test_cpu_plan_follows_the_constraints(cpu_result):
    tables = {t.name: t for t in cpu_result.tables}
    assert set(tables) == {f"t_{s}" for s in load_config(SYNTHETIC).features.names}
    user = tables["t_user_id"]  # dim 16, min_partition 8: really split
    assert user.sharding_type == "column_wise" and user.shard_sizes == [[20000, 8], [20000, 8]]
    assert tables["t_item_id"].sharding_type == "table_wise"
    assert len(tables["t_item_id"].ranks) == 1
    assert tables["t_user_age"].sharding_type == "data_parallel"  # from `default`
    assert tables["t_user_age"].compute_kernel == "dense" and tables["t_user_age"].ranks == [0, 1]
    spec = cpu_result.plan.plan["sparse.ebc"]["t_user_id"].sharding_spec
    assert isinstance(spec, EnumerableShardingSpec) and len(spec.shards) == 2


def test_cpu_plan_stats_add_up(cpu_result):
    ranks = cpu_result.ranks
    assert [r.rank for r in ranks] == [0, 1]
    assert all(r.hbm_used == 0 and r.hbm_cap == 0 for r in ranks)  # CPU: no HBM
    assert all(r.ddr_cap == 4 * GIB for r in ranks)
    reserved = 2 * (cpu_result.dense_reserved.ddr + cpu_result.kjt_reserved.ddr)
    tables = sum(t.ddr_bytes for t in cpu_result.tables)
    assert sum(r.ddr_used for r in ranks) == tables + reserved
    # 20000 x 16 fp32 weights plus one row-wise Adagrad float per row, at least
    assert next(t for t in cpu_result.tables if t.name == "t_user_id").ddr_bytes >= 20000 * 17 * 4
    assert cpu_result.step_time_ms == max(r.total_ms for r in ranks) > 0


def test_gpu_64_plan_for_production_tables(gpu_result):
    tables = {t.name: t for t in gpu_result.tables}
    assert (tables["t_user_id"].rows, tables["t_user_id"].dim) == (500_000_000, 128)
    assert tables["t_user_id"].sharding_type in ("row_wise", "table_row_wise")
    item = tables["t_item_id"]
    assert item.compute_kernel == "fused_uvm_caching" and item.caching_ratio == pytest.approx(0.2)
    assert item.ddr_bytes > item.hbm_bytes > 0  # 20% of the rows cached in HBM
    assert len(gpu_result.ranks) == 64
    assert all(r.hbm_used <= r.hbm_cap == 80 * GIB for r in gpu_result.ranks)
    total_rows = sum(size[0] for size in tables["t_user_id"].shard_sizes)
    assert total_rows == 500_000_000


@pytest.mark.parametrize("which", ["cpu", "gpu"])
def test_plan_json_round_trip(which, cpu_result, gpu_result, tmp_path):
    result = cpu_result if which == "cpu" else gpu_result
    path = save_plan(result, tmp_path / "plan.json", {"note": "test"})
    data = json.loads(path.read_text())
    assert data["meta"]["world_size"] == result.world_size
    assert data["meta"]["device"] == result.device and data["meta"]["note"] == "test"
    assert data["meta"]["torchrec_version"]
    loaded = load_plan(path, result.world_size, result.table_names)
    _assert_same_plan(result.plan, loaded)
    # and a bare ShardingPlan saved from the loaded one gives the same file contents
    again = save_plan(loaded, tmp_path / "again.json", {"world_size": result.world_size})
    assert json.loads(again.read_text())["modules"] == data["modules"]


def test_loaded_plan_is_what_dmp_shards_with(cpu_result, synthetic, tmp_path):
    """One gloo rank: DistributedModelParallel accepts the loaded plan unchanged."""
    from torchrec.distributed.model_parallel import DistributedModelParallel

    plan_cfg = load_plan_config(CPU_2, ["topology.world_size=1", "topology.local_world_size=1"])
    path = save_plan(make_plan(synthetic, plan_cfg, 1, "cpu"), tmp_path / "p1.json")
    plan = load_plan(path, 1, [s.table_name for s in synthetic.features.all])
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = DistributedModelParallel(
            PlanningModel(synthetic),
            device=torch.device("cpu"),
            plan=plan,
            sharders=make_sharders(synthetic),
        )
        _assert_same_plan(model.plan, plan)
        assert type(model.module.sparse.ebc).__name__ == "ShardedEmbeddingBagCollection"
    finally:
        dist.destroy_process_group()


def test_load_refuses_another_world_size(cpu_result, tmp_path):
    path = save_plan(cpu_result, tmp_path / "plan.json")
    with pytest.raises(PlanError, match=r"plan\.json: the plan was made for world size 2 .* 4"):
        load_plan(path, 4, cpu_result.table_names)


def test_load_refuses_unknown_and_missing_tables(cpu_result, tmp_path):
    path = save_plan(cpu_result, tmp_path / "plan.json")
    names = cpu_result.table_names
    with pytest.raises(PlanError, match=r"plan\.json: .*tables not in the job config: t_ctx_hour"):
        load_plan(path, 2, [n for n in names if n != "t_ctx_hour"])
    with pytest.raises(PlanError, match=r"job tables missing from the plan: t_new"):
        load_plan(path, 2, names + ["t_new"])
    with pytest.raises(PlanError, match=r"t_item_id is 50000 x 16 in the plan but 9 x 16"):
        load_plan(path, 2, names, expected_shapes={"t_item_id": (9, 16)})
    with pytest.raises(PlanError, match=r"made for device cpu but the job runs on cuda"):
        load_plan(path, 2, names, expected_device="cuda")


def test_load_refuses_other_json(tmp_path):
    path = _write(tmp_path, json.dumps({"plan": {}}), "x.json")
    with pytest.raises(PlanError, match=r"x\.json: not a dmmp-rec sharding plan"):
        load_plan(path, 2, [])


def test_unknown_table_in_plan_config(synthetic, tmp_path):
    path = _write(tmp_path, "tables:\n  user_idd: {sharding_types: [table_wise]}\n")
    with pytest.raises(PlanError) as err:
        make_plan(synthetic, load_plan_config(path), 2, "cpu")
    text = str(err.value)
    assert str(path) in text and "tables.user_idd" in text and "t_user_id (user_id)" in text


def test_feature_and_table_name_for_one_table(synthetic, tmp_path):
    path = _write(tmp_path, "tables:\n  user_id: {}\n  t_user_id: {}\n")
    with pytest.raises(PlanError, match=r"tables\.t_user_id: table t_user_id is already"):
        make_plan(synthetic, load_plan_config(path), 2, "cpu")


def test_table_names_work_as_keys(synthetic, tmp_path):
    path = _write(
        tmp_path, "tables:\n  t_item_id: {sharding_types: [column_wise], min_partition: 4}\n"
    )
    result = make_plan(synthetic, load_plan_config(path), 2, "cpu")
    item = next(t for t in result.tables if t.name == "t_item_id")
    assert item.sharding_type == "column_wise" and len(item.shard_sizes) > 1


def test_unknown_key_in_plan_config(tmp_path):
    path = _write(tmp_path, "tables:\n  user_id: {min_partitions: 8}\n")
    with pytest.raises(ConfigError, match=r"tables\.user_id\.min_partitions: unknown key") as err:
        load_plan_config(path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"topology\.hbm: unknown key"):
        load_plan_config(GPU_64, ["topology.hbm=4"])


def test_cpu_plan_config_refuses_gpu_only_choices(tmp_path):
    path = _write(
        tmp_path, "topology: {device: cpu}\ntables:\n  item_id: {sharding_types: [row_wise]}\n"
    )
    with pytest.raises(ConfigError, match=r"tables\.item_id: sharding types row_wise cannot"):
        load_plan_config(path)


def test_plan_config_for_another_world_size(synthetic):
    with pytest.raises(PlanError, match=r"cpu_2\.yaml: topology\.world_size: .* for 2 ranks .* 4"):
        make_plan(synthetic, load_plan_config(CPU_2), 4, "cpu")
    with pytest.raises(PlanError, match=r"topology\.device: the plan config is for cpu"):
        make_plan(synthetic, load_plan_config(CPU_2), 2, "cuda")


def test_does_not_fit_gpu():
    cfg = load_config(PRODUCTION)
    plan_cfg = load_plan_config(GPU_64, ["topology.hbm_cap_gb=4"])
    with pytest.raises(PlanError) as err:
        make_plan(cfg, plan_cfg, 64, "cuda")
    text = str(err.value)
    assert "gpu_64.yaml: the tables do not fit on 64 x cuda" in text
    assert "each rank has HBM 4.00 GiB" in text and "t_user_id" in text


def test_does_not_fit_cpu(synthetic):
    plan_cfg = load_plan_config(CPU_2, ["topology.ddr_cap_gb=0.005"])
    with pytest.raises(PlanError, match=r"do not fit on 2 x cpu: they need at least DDR"):
        make_plan(synthetic, plan_cfg, 2, "cpu")


def test_shipped_plan_configs_load():
    for path in sorted((ROOT / "configs/plans").glob("*.yaml")):
        assert load_plan_config(path).topology.world_size is not None, path


def test_cli_plan_writes_a_loadable_plan(tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["plan", "--config", str(SYNTHETIC), "--plan", str(CPU_2), "--out", str(out)]
    assert main(argv + ["data.batch_size=256"]) == 0
    printed = capsys.readouterr().out
    assert "Per-rank estimates (2 x cpu" in printed and "batch 512 per rank" in printed
    assert "t_user_id" in printed and "column_wise" in printed
    names = [s.table_name for s in load_config(SYNTHETIC).features.all]
    assert load_plan(out, 2, names).plan["sparse.ebc"]["t_item_id"].sharding_type == "table_wise"


def test_cli_plan_errors_exit_2(tmp_path, capsys):
    base = ["plan", "--config", str(SYNTHETIC), "--out", str(tmp_path / "p.json")]
    assert main(base + ["--plan", str(CPU_2), "--world-size", "3"]) == 2
    assert "for 2 ranks but the job has 3" in capsys.readouterr().err
    assert main(base) == 2
    assert "give --world-size" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_no_ties_left_for_the_planner(synthetic):
    """One host: table_row_wise is row_wise; a column split of a narrow table is table_wise."""
    plan_cfg = load_plan_config(GPU_64, ["topology.world_size=8"])
    result = make_plan(load_config(PRODUCTION), plan_cfg, 8, "cuda")
    tables = {t.name: t for t in result.tables}
    for name in ("t_user_id", "t_user_hist_items", "t_item_id"):  # allowed: row_wise, trw
        assert tables[name].sharding_type == "row_wise", name
    for t in result.tables:  # default allows column_wise, but no table is wider than 128
        assert t.sharding_type != "column_wise", t.name


TIES = """
topology: {world_size: 8, local_world_size: 8, device: cuda}
tables:
  user_id: {sharding_types: [row_wise, table_row_wise], compute_kernels: [fused]}
  item_id: {sharding_types: [row_wise, table_row_wise], compute_kernels: [fused]}
  default: {sharding_types: [data_parallel], compute_kernels: [dense]}
"""


@pytest.mark.slow
def test_plan_is_the_same_in_every_process(tmp_path):
    """torchrec breaks ties in hash order; our constraints leave no ties, so every rank agrees."""
    plan = _write(tmp_path, TIES)
    argv = [sys.executable, "-m", "dmmp_rec.cli", "plan", "--config", str(SYNTHETIC)]
    modules = []
    for seed in ("0", "2"):  # without tie pruning these pick row_wise vs table_row_wise
        out = tmp_path / f"plan{seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = argv + ["--plan", str(plan), "--out", str(out)]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        modules.append(json.loads(out.read_text())["modules"])
    assert modules[0] == modules[1]


def test_planner_stand_in_holds_the_ebc_where_the_model_does(synthetic):
    from dmmp_rec.model.factory import build_model
    from dmmp_rec.model.sparse import EBC_PATH

    model = build_model(synthetic, device=torch.device("cpu"), sparse_device="meta")
    assert model.get_submodule(EBC_PATH) is model.sparse.ebc
    stand_in = PlanningModel(synthetic)
    assert type(stand_in.get_submodule(EBC_PATH)) is type(model.sparse.ebc)
    assert [n for n, _ in stand_in.named_parameters()] == [
        n for n, _ in model.named_parameters() if n.startswith(EBC_PATH + ".")
    ]
