"""`dmmp-rec export --quantize int8`: int8 row-wise tables pool like nn.EmbeddingBag over their
dequantized rows, export with torch.export and load without dmmp_rec or fbgemm, shrink the
tables 4D / (D + 8) times, and retrieve what fp32 retrieves (top-100 overlap >= 0.95 on a small
trained model)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
from support import REPO, tiny_overrides
from test_export import trained_model
from torch import nn

from dmmp_rec.cli import main
from dmmp_rec.config import config_from_dict
from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE
from dmmp_rec.distributed.env import shutdown
from dmmp_rec.inference.catalogue_vectors import encode_items, encode_users
from dmmp_rec.serving.item_side import encode_table
from dmmp_rec.serving.manifest import read_manifest
from dmmp_rec.serving.quantize import Int8RowwiseBag, quantize_bags, table_bytes
from dmmp_rec.serving.requests import parse_table
from dmmp_rec.serving.retrieve import Retriever
from dmmp_rec.serving.user_file import load_user_side, save_user_side


def _bags(n: int = 50, d: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids and B = 4 bag starts: bags of 3, 0 (empty), 1 and 4 ids."""
    values = torch.tensor([1, 7, 7, 49, 0, 3, 3, 3])
    return torch.randn(n, d) * 0.2, values, torch.tensor([0, 3, 3, 4])


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_int8_bag_pools_its_dequantized_rows_like_embedding_bag(mode) -> None:
    torch.manual_seed(0)
    weight, values, offsets = _bags()
    bag = Int8RowwiseBag(weight, mode)
    rows = bag.dequantized()
    span = weight.max(1).values - weight.min(1).values
    assert ((rows - weight).abs().max(1).values <= span / 255 / 2 + 1e-6).all()  # half a step
    want = nn.EmbeddingBag.from_pretrained(rows, mode=mode)(values, offsets)
    got = bag(values, offsets)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got[1].abs().max() == 0  # an empty bag pools to zeros, as in the EBC


def test_quantize_bags_replaces_every_table_and_shrinks_it_4d_over_d_plus_8() -> None:
    module = nn.Module()
    module.bags = nn.ModuleList(
        [nn.EmbeddingBag(1000, 16, mode="sum"), nn.EmbeddingBag(10, 4, mode="mean")]
    )
    quantized = quantize_bags(module)
    assert [type(b) for b in quantized.bags] == [Int8RowwiseBag, Int8RowwiseBag]
    assert [type(b) for b in module.bags] == [nn.EmbeddingBag, nn.EmbeddingBag]  # a copy
    assert table_bytes(module) == 4 * (1000 * 16 + 10 * 4)
    assert table_bytes(quantized) == 1000 * (16 + 8) + 10 * (4 + 8)


_ISOLATED = textwrap.dedent(
    """
    import os, sys
    repo = os.path.realpath(sys.argv[2])
    sys.path = [p for p in sys.path if p and os.path.realpath(p) != repo]
    sys.modules["dmmp_rec"] = None  # importing dmmp_rec, fbgemm or torchrec now fails
    sys.modules["fbgemm_gpu"] = None
    sys.modules["torchrec"] = None
    import torch
    module = torch.export.load(sys.argv[1]).module()
    values, offsets = [torch.tensor([1, 7, 7, 49, 0, 3, 3, 3])], [torch.tensor([0, 3, 3, 4])]
    torch.save(module(values, offsets), sys.argv[1] + ".out")
    """
)


def test_int8_archive_runs_with_plain_torch(tmp_path) -> None:
    torch.manual_seed(0)
    weight, values, offsets = _bags()

    class Side(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bags = nn.ModuleList([nn.EmbeddingBag.from_pretrained(weight, mode="mean")])

        def forward(self, values: list[torch.Tensor], offsets: list[torch.Tensor]):
            return self.bags[0](values[0], offsets[0]).sum(1, keepdim=True)

    int8 = quantize_bags(Side()).eval()
    path = tmp_path / "side.pt2"
    save_user_side(int8, [50], path, knob=False)
    graph = str(torch.export.load(str(path)).graph)
    assert "quantized.embedding_bag_byte_rowwise_offsets" in graph and "fbgemm" not in graph
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED, str(path), str(REPO)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = torch.load(str(path) + ".out", weights_only=True)
    torch.testing.assert_close(out, int8([values], [offsets]), atol=1e-6, rtol=0)
    torch.testing.assert_close(load_user_side(path)([values], [offsets]), out)


@pytest.fixture(scope="module")
def int8_export(tiny_world, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("int8")
    argv = ["train", "--config", "configs/synthetic.yaml"]
    argv += tiny_overrides(
        tiny_world,
        root / "run",
        "train.max_steps=60",
        "train.eval_batches=0",
        "train.select_best_on=null",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dmmp_rec.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    created = not dist.is_initialized()
    try:
        for quantize in ("none", "int8"):
            argv = ["export", "--checkpoint", str(root / "run"), "--out", str(root / quantize)]
            assert main([*argv, "--quantize", quantize, "--quiet"]) == 0
    finally:
        if created:
            shutdown()
    return root


def test_int8_export_retrieves_what_fp32_retrieves(int8_export) -> None:
    root = int8_export
    m = read_manifest(root / "int8")
    q = m.quantization
    assert read_manifest(root / "none").quantization is None
    assert q is not None and q.tables == "int8_rowwise" and q.users == 1000 and q.top_k == 100
    assert q.top_k_overlap_mean >= 0.95
    for side in ("user_side", "item_side"):  # dims 4..16: between 4*4/12 and 4*16/24 smaller
        assert 1.3 < q.fp32_table_bytes[side] / q.table_bytes[side] < 2.7

    # the same bound, recomputed here over every user of the world, brute force
    cfg = config_from_dict(__import__("json").loads((root / "run" / "config.json").read_text()))
    model = trained_model(cfg, root / "run")
    users = pq.read_table(Path(cfg.data.path) / USERS_FILE)
    items = pq.read_table(Path(cfg.data.path) / ITEMS_FILE)
    fp32_q, _ = encode_users(model, cfg.features, users)
    fp32_v = encode_items(model, cfg.features, items)
    retriever = Retriever(root / "int8")
    int8_q, gates = retriever.encode(parse_table(users, retriever.features, "users"))
    top = 100
    a = np.argsort(-(fp32_q @ fp32_v.T), axis=1)[:, :top]
    b = np.argsort(-(int8_q @ retriever.item_vectors.T), axis=1)[:, :top]
    overlap = np.mean([len(np.intersect1d(x, y)) / top for x, y in zip(a, b, strict=True)])
    assert 0.95 <= overlap < 1.0  # close to fp32, and really quantized
    np.testing.assert_allclose(gates.sum(1), 1.0, atol=1e-6)

    # the shipped int8 item encoder gives the exported item vectors
    item_side = load_user_side(root / "int8" / m.files["item_side"].path)
    vectors = encode_table(item_side, items, cfg.features.group("item"))
    np.testing.assert_allclose(vectors, retriever.item_vectors, atol=1e-5, rtol=0)
    assert np.abs(retriever.item_vectors - fp32_v).max() > 1e-4
    results = retriever.search(parse_table(users.slice(0, 3), retriever.features, "u"), 5)
    assert [len(r.candidates) for r in results] == [5, 5, 5]
