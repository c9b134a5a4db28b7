"""Collectives follow the process group's device rule, checked on CPU with the device guard.

Under NCCL (every GPU job) a collective takes CUDA tensors only. tests/device_guard.py makes 2
gloo ranks look like an NCCL job to our code (collective_device() says cuda:<rank>, CUDA
placements become CPU stand-ins) and refuses any collective of ours that hands over a tensor of
another device type. The checkpoint resume, the validation gathers and distributed evaluation
run through it here; the `_all_ok` that issue 11 found (a CPU flag all-reduced on the default
group) is shown to fail it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from device_guard import GLOO, NCCL, CudaStandIn, DeviceRuleError, device_guard
from support import CONFIG, run_ranks, spawn_ranks, tiny_config, tiny_overrides

from dmmp_rec.distributed.checkpoint import CheckpointManager, _all_ok
from dmmp_rec.distributed.env import DistEnv, collective_device, init_distributed, shutdown


def _all_ok_before_issue_11(ok: bool) -> bool:
    """checkpoint._all_ok as it was: the flag is a CPU tensor whatever the backend."""
    if not dist.is_initialized():
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64)
    dist.all_reduce(flag)
    return int(flag.item()) == 0


@pytest.fixture
def one_rank_group():
    env = init_distributed("cpu")
    yield env
    shutdown()


def test_collective_device_without_a_group_and_under_gloo(one_rank_group: DistEnv) -> None:
    assert one_rank_group.backend == "gloo" and one_rank_group.local_world_size == 1
    assert collective_device() == torch.device("cpu")
    with device_guard(GLOO) as log:  # gloo's own rule: CPU tensors, no stand-ins
        flag = torch.ones(2, device=collective_device())
        dist.all_reduce(flag)
    assert type(flag) is torch.Tensor and log.names_from(__name__) == ["all_reduce"]
    shutdown()
    assert collective_device() == torch.device("cpu")  # no group: the CPU


def test_device_guard_stand_in_acts_like_cuda(one_rank_group: DistEnv) -> None:
    with device_guard(NCCL, index=0) as log:
        assert collective_device() == torch.device("cuda", 0)
        on_gpu = torch.arange(3.0, device=collective_device())
        assert isinstance(on_gpu, CudaStandIn) and on_gpu.device == torch.device("cuda", 0)
        moved = torch.ones(3).to(collective_device())
        assert isinstance(moved * 2 + on_gpu, CudaStandIn)  # stays "on the GPU" through ops
        with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
            on_gpu.numpy()
        back = (on_gpu + moved).cpu()
        assert type(back) is torch.Tensor
        np.testing.assert_array_equal(back.numpy(), [1.0, 2.0, 3.0])
        dist.all_reduce(on_gpu)  # accepted, and the real gloo collective ran on its memory
        np.testing.assert_array_equal(on_gpu.cpu().numpy(), [0.0, 1.0, 2.0])
        with pytest.raises(DeviceRuleError, match="all_reduce called from .*a cpu tensor"):
            dist.all_reduce(torch.ones(1))
    assert [c.name for c in log.calls] == ["all_reduce"]
    assert log.calls[0].devices == ["cuda:0"]
    assert collective_device() == torch.device("cpu")  # the guard is gone


def _old_and_new_all_ok(env: DistEnv, out: Path) -> None:
    with device_guard(NCCL) as log:
        with pytest.raises(DeviceRuleError, match=r"all_reduce .*cpu tensor.* nccl"):
            _all_ok_before_issue_11(True)
        agreed = [_all_ok(True), _all_ok(env.rank == 0)]
    seen = [c for c in log.calls if c.caller.startswith("dmmp_rec.distributed.checkpoint:")]
    assert [c.devices for c in seen] == [[f"cuda:{env.rank}"]] * 2
    (out / f"rank{env.rank}.json").write_text(json.dumps(agreed))


def test_nccl_guard_catches_the_all_ok_of_before(tmp_path: Path) -> None:
    spawn_ranks(_old_and_new_all_ok, 2, tmp_path)
    for rank in (0, 1):  # one rank not ok: no rank is
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == [True, False]


def _save_and_resume(env: DistEnv, root: Path) -> None:
    weights = torch.arange(6.0).reshape(2, 3) * (env.rank + 1)
    state = {"model": {f"w{env.rank}": weights.clone(), "shared": torch.full((4,), 7.0)}}
    manager = CheckpointManager(root, keep=1)
    with device_guard(NCCL) as log:
        manager.save(5, state, {"world_size": env.world_size})
        target = {"model": {f"w{env.rank}": torch.zeros(2, 3), "shared": torch.zeros(4)}}
        restored = manager.restore_latest(lambda saved: target, log=lambda *_: None)
    assert restored is not None
    info, trainer_state, loaded = restored
    assert info.step == 5 and trainer_state["world_size"] == 2
    torch.testing.assert_close(loaded["model"][f"w{env.rank}"], weights)
    torch.testing.assert_close(loaded["model"]["shared"], torch.full((4,), 7.0))
    ours = log.names_from("dmmp_rec.distributed.checkpoint")
    assert "all_reduce" in ours and "broadcast_object_list" in ours and "barrier" in ours


def test_checkpoint_save_and_resume_under_nccl_device_rule(tmp_path: Path) -> None:
    spawn_ranks(_save_and_resume, 2, tmp_path / "checkpoints")
    assert (tmp_path / "checkpoints" / "step-00000005" / "MANIFEST.json").is_file()


def _evaluate_sharded(env: DistEnv, world: Path, run: Path, out: Path) -> None:
    from dmmp_rec.distributed.runtime import build_sharded_model
    from dmmp_rec.eval.report import EvalOptions, evaluate_model
    from dmmp_rec.eval.retrieval_eval import RetrievalOptions

    cfg = tiny_config(world, run)
    dmp = build_sharded_model(cfg, env)
    dmp.eval()
    options = EvalOptions(
        retrieval=RetrievalOptions(ks=[10], oracle_users=60, batch_size=700, seed=cfg.seed),
        progress=False,
    )
    with device_guard(NCCL) as log:
        report = evaluate_model(dmp, cfg, env, options)
    gathers = log.names_from("dmmp_rec.distributed.collectives")
    assert "all_gather" in gathers  # the retrieval encodings (gather_shares)
    assert "gather_object" in gathers  # the impressions and per-user metrics, to rank 0
    assert "all_gather_object" not in gathers  # never every rank's rows to every rank
    assert "broadcast_object_list" in gathers  # rank 0's (small) metrics, sent round
    assert log.internal_calls > 0  # the sharded EBC's own all-to-alls ran (not ours to check)
    if env.rank == 0:
        teacher = report.teacher
        (out / "report.json").write_text(json.dumps({"rows": teacher.counts["rows"]}))


def test_distributed_eval_gathers_under_nccl_device_rule(tiny_world: Path, tmp_path: Path) -> None:
    spawn_ranks(_evaluate_sharded, 2, tiny_world, tmp_path / "run", tmp_path)
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    world = json.loads((tiny_world / "world.json").read_text())
    assert rows == world["splits"]["test"]["rows"]  # every test row gathered exactly once


GUARDED_CLI = str(Path(__file__).resolve().parent / "scripts" / "guarded_cli.py")


def _guarded(tmp: Path, name: str, argv: list[str]) -> list[dict]:
    logs = tmp / name
    logs.mkdir()
    run_ranks(2, [GUARDED_CLI, str(logs), *argv])
    return [json.loads((logs / f"rank_{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_training_and_resume_jobs_under_nccl_device_rule(tiny_world: Path, tmp_path: Path) -> None:
    """`dmmp-rec train` on 2 ranks with the guard on, twice: periodic validation and checkpoints,
    then a resume through CheckpointManager.restore_latest (distributed eval: the test above)."""
    run = tmp_path / "run"
    common = tiny_overrides(tiny_world, run, "train.checkpoint_every=5", "train.eval_batches=2")
    train = ["train", "--config", str(CONFIG), *common, "train.eval_every=5"]
    first = _guarded(tmp_path, "train", [*train, "train.max_steps=10"])
    resumed = _guarded(tmp_path, "resume", [*train, "train.max_steps=15"])

    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_step"] == 10 and summary["steps"] == 15
    for rank, logs in enumerate(zip(first, resumed, strict=True)):
        seen = [{(c["caller"].split(":")[0], c["name"]) for c in log["calls"]} for log in logs]
        assert ("dmmp_rec.distributed.model_parallel", "broadcast_object_list") in seen[0]
        assert ("dmmp_rec.distributed.collectives", "gather_object") in seen[0]  # validation
        assert ("dmmp_rec.distributed.checkpoint", "barrier") in seen[0]  # saves
        assert ("dmmp_rec.distributed.checkpoint", "all_reduce") in seen[1]  # resume's _all_ok
        flags = [c for c in logs[1]["calls"] if c["name"] == "all_reduce"]
        assert {d for c in flags for d in c["devices"]} == {f"cuda:{rank}"}
        assert all(log["internal_calls"] > 0 for log in logs)  # DMP's own, not ours to check
