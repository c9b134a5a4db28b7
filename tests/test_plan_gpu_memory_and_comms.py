"""The planner on GPUs: each GPU's memory is the local GPUs' real memory when CUDA is present
and the plan config sets no `topology.hbm_cap_gb` (not torchrec's 32 GiB default), printed and
recorded in the plan; the source of device properties is injected here, so no GPU is needed.
And quantized comms (`comms` in a plan config: torchrec QCommsConfig codecs on the sharders),
validated on load, saved with the plan, and active in a 2-rank all-to-all."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import CONFIG, spawn_ranks, tiny_config

from dmmp_rec.cli import main
from dmmp_rec.config import ConfigError, load_config
from dmmp_rec.distributed.model_parallel import plan_comms, sharders_for
from dmmp_rec.distributed.planning.config import GIB, PlanError, load_plan_config
from dmmp_rec.distributed.planning.io import save_plan
from dmmp_rec.distributed.planning.planner import make_plan, make_sharders

REPO = Path(__file__).resolve().parents[1]
CPU_2 = REPO / "configs" / "plans" / "cpu_2.yaml"
H100 = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_045_510_144)
A100_40 = SimpleNamespace(name="NVIDIA A100-SXM4-40GB", total_memory=42_505_273_344)


@pytest.fixture(scope="module")
def synthetic():
    return load_config(CONFIG)


def test_cuda_plan_uses_the_local_gpus_memory(synthetic, tmp_path: Path) -> None:
    one = make_plan(synthetic, None, 2, "cuda", gpu_properties=lambda: [H100])
    assert {r.hbm_cap for r in one.ranks} == {85_045_510_144}  # not torchrec's 32 GiB
    result = make_plan(synthetic, None, 2, "cuda", gpu_properties=lambda: [H100, A100_40])
    assert {r.hbm_cap for r in result.ranks} == {42_505_273_344}  # the smallest local GPU
    assert result.meta["hbm_cap_gb"] == 39.586
    assert "NVIDIA A100-SXM4-40GB, the smallest of 2 local GPU(s)" in result.meta["hbm_cap_source"]
    saved = json.loads(save_plan(result, tmp_path / "plan.json").read_text())
    assert saved["meta"]["hbm_cap_gb"] == 39.586 and "A100" in saved["meta"]["hbm_cap_source"]


def test_the_plan_configs_cap_wins_and_no_gpu_keeps_torchrecs_default(synthetic) -> None:
    def never() -> list:
        raise AssertionError("the plan config's cap needs no device probe")

    capped = load_plan_config(CPU_2, ["topology.device=null", "topology.hbm_cap_gb=40"])
    result = make_plan(synthetic, capped, 2, "cuda", gpu_properties=never)
    assert {r.hbm_cap for r in result.ranks} == {40 * GIB}
    assert result.meta["hbm_cap_source"] == "topology.hbm_cap_gb"
    default = make_plan(synthetic, None, 2, "cuda", gpu_properties=lambda: [])
    assert {r.hbm_cap for r in default.ranks} == {32 * GIB}
    assert default.meta["hbm_cap_source"].startswith("torchrec's default")
    cpu = make_plan(synthetic, None, 2, "cpu", gpu_properties=never)
    assert "hbm_cap_gb" not in cpu.meta


def test_cli_plan_prints_the_hbm_it_assumed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan.json"
    argv = ["plan", "--config", str(CONFIG), "--world-size", "2", "--device", "cuda"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = json.loads(out.read_text())["meta"]
    assert f"HBM per GPU {meta['hbm_cap_gb']:.2f} GiB ({meta['hbm_cap_source']})" in printed
    if not torch.cuda.is_available():
        assert meta["hbm_cap_gb"] == 32.0


def _comms_plan(tmp_path: Path, forward: str, backward: str, device: str = "cpu") -> Path:
    text = CPU_2.read_text().replace("device: cpu", f"device: {device}")
    path = tmp_path / f"comms_{forward}_{backward}_{device}.yaml"
    path.write_text(
        f"{text}\ncomms:\n  forward_precision: {forward}\n  backward_precision: {backward}\n"
    )
    return path


def test_comms_are_validated_on_load(tmp_path: Path) -> None:
    cfg = load_plan_config(_comms_plan(tmp_path, "fp16", "bf16", device="cuda"))
    assert (cfg.comms.forward_precision, cfg.comms.backward_precision) == ("fp16", "bf16")
    with pytest.raises(ConfigError, match=r"comms.*gloo has no bf16"):
        load_plan_config(_comms_plan(tmp_path, "bf16", "fp16"))
    with pytest.raises(ConfigError, match="comms.forward_precision"):
        load_plan_config(_comms_plan(tmp_path, "fp8", "fp16", device="cuda"))
    with pytest.raises(ConfigError, match="comms"):
        load_plan_config(CPU_2, ["comms.backward=fp16"])


def test_comms_reach_the_sharders_and_the_saved_plan(synthetic, tmp_path: Path) -> None:
    (plain,) = make_sharders(synthetic)
    assert plain.qcomm_codecs_registry is None
    plan_cfg = load_plan_config(_comms_plan(tmp_path, "fp16", "fp16"))
    (sharder,) = make_sharders(synthetic, plan_cfg.comms, "cpu")
    assert "POOLED_EMBEDDINGS_ALL_TO_ALL" in sharder.qcomm_codecs_registry
    cuda_comms = load_plan_config(_comms_plan(tmp_path, "bf16", "bf16", device="cuda")).comms
    with pytest.raises(PlanError, match="bf16 comms need cuda"):
        make_sharders(synthetic, cuda_comms, "cpu")
    result = make_plan(synthetic, plan_cfg, 2, "cpu")
    assert result.meta["comms"] == {"forward_precision": "fp16", "backward_precision": "fp16"}
    saved = save_plan(result, tmp_path / "plan.json")
    assert plan_comms(str(saved)) == plan_cfg.comms  # `train` with the saved plan: same codecs
    assert plan_comms(None) is None


def _pooled(env, world: Path, plan: str, out: Path) -> None:
    from dmmp_rec.data.loader import loader_for_split
    from dmmp_rec.distributed.runtime import build_sharded_model

    cfg = tiny_config(world, out / "run", f"sharding.plan={plan}")
    assert (sharders_for(cfg)[0].qcomm_codecs_registry is None) == plan.endswith("cpu_2.yaml")
    dmp = build_sharded_model(cfg, env)
    batch = next(iter(loader_for_split(cfg, "train", env.rank, env.world_size)))
    groups = dmp.module.sparse(batch.features)
    sum(g.sum() for g in groups.values()).backward()  # the backward codec runs too
    pooled = torch.cat([groups[k] for k in sorted(groups)], dim=1).detach().numpy()
    np.save(out / f"rank{env.rank}.npy", pooled)


@pytest.mark.slow
def test_fp16_comms_round_the_all_to_all_on_two_ranks(tiny_world: Path, tmp_path: Path) -> None:
    results = {}
    for name, plan in (("fp32", CPU_2), ("fp16", _comms_plan(tmp_path, "fp16", "fp16"))):
        out = tmp_path / name
        out.mkdir()
        spawn_ranks(_pooled, 2, tiny_world, str(plan), out)
        results[name] = np.concatenate([np.load(out / f"rank{r}.npy") for r in (0, 1)])
    diff = np.abs(results["fp16"] - results["fp32"])
    scale = np.abs(results["fp32"]).max()
    assert diff.max() > 0  # the codec ran: the embeddings crossed the wire as fp16
    assert diff.max() <= 1e-3 * scale  # and only fp16's rounding changed them


def test_a_training_jobs_plan_json_records_what_its_plan_assumed(tmp_path: Path) -> None:
    from dmmp_rec.distributed.model_parallel import plan_facts

    comms_yaml = _comms_plan(tmp_path, "fp16", "fp32")
    cfg = tiny_config(tmp_path, tmp_path / "run", f"sharding.plan={comms_yaml}")
    fp16 = {"forward_precision": "fp16", "backward_precision": "fp32"}
    assert plan_facts(cfg, "cpu") == {"comms": fp16}
    plain = tiny_config(tmp_path, tmp_path / "run")
    assert plan_facts(plain, "cpu") == {}
    if not torch.cuda.is_available():  # planned now for cuda here: torchrec's default, said so
        facts = plan_facts(plain, "cuda")
        assert facts["hbm_cap_gb"] == 32.0 and "torchrec's default" in facts["hbm_cap_source"]
    saved = tmp_path / "saved.json"
    meta = {"hbm_cap_gb": 79.2, "hbm_cap_source": "x", "comms": fp16, "device": "cuda"}
    saved.write_text(json.dumps({"meta": meta}))
    from_saved = tiny_config(tmp_path, tmp_path / "run", f"sharding.plan={saved}")
    assert plan_facts(from_saved, "cuda") == {
        k: meta[k] for k in ("hbm_cap_gb", "hbm_cap_source", "comms")
    }
