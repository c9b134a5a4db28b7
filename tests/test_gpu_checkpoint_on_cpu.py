"""A run trained on GPUs exports and serves on a CPU-only machine.

What a GPU run leaves that a CPU machine must read: DCP files (the writer stages every tensor to
host memory and the reader maps to the CPU, so only pickled non-tensor entries could carry a
device: none of ours holds a tensor) and a config naming the training job's GPU plan and device.
The run of tests/test_export.py is given such a config (a 2 x 8 GPU plan, train.device=cuda) and
exported again here, on the CPU.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from test_export import exported  # noqa: F401  (the session fixture: a trained, exported run)

from dmmp_rec.cli import main
from dmmp_rec.distributed.checkpoint import list_checkpoints
from dmmp_rec.distributed.env import shutdown
from dmmp_rec.distributed.planning.config import PlanError
from dmmp_rec.distributed.planning.io import load_plan, save_plan
from dmmp_rec.distributed.planning.planner import make_plan
from dmmp_rec.serving.retrieve import Retriever, demo_users


def _tensors_inside(obj: object) -> list[str]:
    found: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, torch.Tensor):
            found.append(path)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(obj, "")
    return found


def test_checkpoint_pickles_no_tensor_a_gpu_would_tag(exported) -> None:  # noqa: F811
    """Tensors are DCP tensor items (read back with map_location='cpu'); entries DCP pickles
    whole are read without a map_location, so none may hold a tensor (a GPU run's would be a
    CUDA tensor that a CPU machine cannot load)."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    step = list_checkpoints(exported.run / "checkpoints")[0].path
    with open(step / ".metadata", "rb") as f:
        metadata = pickle.load(f)
    kinds = metadata.state_dict_metadata
    pickled = [k for k, v in kinds.items() if isinstance(v, BytesStorageMetadata)]
    tensors = [k for k, v in kinds.items() if isinstance(v, TensorStorageMetadata)]
    assert len(tensors) > 20 and any("embedding_bags" in k for k in tensors)
    reader = torch.distributed.checkpoint.FileSystemReader(str(step))
    state = {key: io.BytesIO() for key in pickled}
    torch.distributed.checkpoint.load(state, storage_reader=reader, no_dist=True)
    for key in pickled:
        assert _tensors_inside(state[key]) == [], key


def test_export_of_a_gpu_trained_run_on_a_cpu_machine(exported, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "gpu_run"
    shutil.copytree(exported.run, run, ignore=shutil.ignore_patterns("export"))
    config = json.loads((run / "config.json").read_text())
    gpu_plan = save_plan(
        make_plan(exported.cfg, None, 16, "cuda", local_world_size=8), run / "plan.json"
    )
    config["sharding"]["plan"] = str(gpu_plan)
    config["train"]["device"] = "cuda"
    (run / "config.json").write_text(json.dumps(config))
    tables = [s.table_name for s in exported.cfg.features.all]
    with pytest.raises(PlanError, match="world size 16"):  # what export used to trip on
        load_plan(gpu_plan, 1, tables, expected_device="cpu")

    created = not dist.is_initialized()
    try:
        argv = ["export", "--checkpoint", str(run), "--out", str(tmp_path / "export")]
        assert main([*argv, "--recall-queries", "100", "--quiet"]) == 0
    finally:
        if created:
            shutdown()
    np.testing.assert_array_equal(
        np.load(tmp_path / "export" / "item_vectors.npy"),
        np.load(exported.export / "item_vectors.npy"),
    )
    retriever = Retriever(tmp_path / "export")
    results = retriever.search(demo_users(retriever, 3), 5)
    assert [len(r.candidates) for r in results] == [5, 5, 5]
