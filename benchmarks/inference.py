"""Tower inference latency: the user tower with its gate and the item towers, lookups included.

Variants per side and batch size (1, 64, 1024), each timed call by call for p50 / p99:
- eager: the training model itself (`DMMPModel.query_vector` / `item_vector`, through the EBC);
- eager_plain: the serving module (plain EmbeddingBags + the same towers), not compiled;
- compiled: that module under `torch.compile` (warm-up capped; compile time reported);
- exported (user side): the torch.export archive the serving code writes and loads
  (`dmmp_rec.serving.user_file`), i.e. what `dmmp-rec export` ships;
- eager_int8 / exported_int8: the same with int8 row-wise tables (`dmmp-rec export --quantize
  int8`, `dmmp_rec.serving.quantize`); `table_bytes` compares the tables' sizes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from benchmarks.common import load_now, percentiles_ms, time_calls
from dmmp_rec.config import DmmpConfig
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.serving.item_side import ItemSide
from dmmp_rec.serving.quantize import quantize_bags, table_bytes
from dmmp_rec.serving.user_file import load_user_side, save_user_side
from dmmp_rec.serving.user_side import UserSide


def tables_of(model: DMMPModel) -> dict[str, torch.Tensor]:
    return {name: bag.weight for name, bag in model.sparse.ebc.embedding_bags.items()}


def split_inputs(kjt: KeyedJaggedTensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-feature (values, offsets) with B start offsets, the serving modules' input."""
    jts = kjt.to_dict()
    names = kjt.keys()
    values = [jts[n].values().long() for n in names]
    return values, [jts[n].offsets()[:-1].long() for n in names]


def _time(fn: Any, calls: int, warmup: int) -> dict[str, float]:
    with torch.no_grad():
        return percentiles_ms(time_calls(fn, calls, warmup))


def _compiled(module: nn.Module, args: tuple, warmup: int) -> tuple[Any, float]:
    compiled = torch.compile(module, dynamic=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(warmup):
            compiled(*args)
    return compiled, time.perf_counter() - t0


def bench_inference(
    cfg: DmmpConfig,
    model: DMMPModel,
    user_batches: dict[int, KeyedJaggedTensor],
    item_batches: dict[int, KeyedJaggedTensor],
    calls: dict[int, int],
    with_compile: bool = True,
) -> dict[str, Any]:
    """Latency tables {side: {variant: {batch: percentiles}}}; `calls[b]` timed calls at b."""
    user_specs = cfg.features.group("user")
    ctx_specs = cfg.features.group("context")
    user_side = UserSide(user_specs, ctx_specs, tables_of(model), model.student).eval()
    item_side = ItemSide(cfg.features.group("item"), tables_of(model), model.student).eval()
    int8 = {"user": quantize_bags(user_side).eval(), "item": quantize_bags(item_side).eval()}
    cards = [s.cardinality for s in user_specs + ctx_specs]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_user_side(user_side, cards, Path(tmp) / "user_side.pt2")
        export_s = time.perf_counter() - t0
        save_user_side(int8["user"], cards, Path(tmp) / "user_side_int8.pt2")
        exported = load_user_side(Path(tmp) / "user_side.pt2")
        exported_int8 = load_user_side(Path(tmp) / "user_side_int8.pt2")
    out: dict[str, Any] = {"user": {}, "item": {}, "compile_s": {}, "export_s": round(export_s, 2)}
    out["table_bytes"] = {
        side: {"fp32": table_bytes(plain), "int8": table_bytes(int8[side])}
        for side, plain in (("user", user_side), ("item", item_side))
    }
    for side, batches, eager_fn, plain in (
        ("user", user_batches, model.query_vector, user_side),
        ("item", item_batches, model.item_vector, item_side),
    ):
        res: dict[str, dict[int, Any]] = {"eager": {}, "eager_plain": {}, "compiled": {}}
        res["eager_int8"] = {}
        if side == "user":
            res["exported"], res["exported_int8"] = {}, {}
        for b, kjt in batches.items():
            n = calls[b]
            args = split_inputs(kjt)
            if side == "user":  # the serving knob, at its trained value
                args = (*args, torch.zeros(1))
            print(f"  {side} tower, batch {b}: {n} calls per variant", flush=True)
            res["eager"][b] = _time(lambda k=kjt, f=eager_fn: f(k), n, 3)
            res["eager_plain"][b] = _time(lambda a=args, m=plain: m(*a), n, 3)
            res["eager_int8"][b] = _time(lambda a=args, m=int8[side]: m(*a), n, 3)
            if with_compile:
                compiled, secs = _compiled(plain, args, 2)
                out["compile_s"][f"{side}/{b}"] = round(secs, 1)
                res["compiled"][b] = _time(lambda a=args, c=compiled: c(*a), n, 2)
            if side == "user":
                res["exported"][b] = _time(lambda a=args: exported(*a), n, 3)
                res["exported_int8"][b] = _time(lambda a=args: exported_int8(*a), n, 3)
        out[side] = {k: v for k, v in res.items() if v}
    out["loadavg"] = load_now()
    return out
