"""Training batches read ahead by a worker (data.prefetch_batches): the same batches in the
same order, the same resume positions, loader errors still naming file and row."""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from support import tiny_config
from test_loader import _loader, _uids, _write

from dmmp_rec.config import load_config
from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.data import schema
from dmmp_rec.data.loader import DataError
from dmmp_rec.data.prefetch import InlineBatches, PrefetchedBatches, training_batches
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.train.position import TrackedIterator
from dmmp_rec.train.trainer import train

CPU = torch.device("cpu")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
LIMIT = 25  # batches of 16 over 163 rows: 10 an epoch, so the run crosses two epoch ends


@pytest.fixture(scope="module")
def features() -> FeaturesConfig:
    return load_config(CONFIG).features


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, features: FeaturesConfig) -> list[Path]:
    root = tmp_path_factory.mktemp("prefetch")
    rows = [(0, 70), (70, 123), (123, 163)]
    return [
        _write(root / f"part-{i}.parquet", np.arange(lo, hi), features)
        for i, (lo, hi) in enumerate(rows)
    ]


def _tracked(files: list[Path], features: FeaturesConfig, depth: int):  # type: ignore[no-untyped-def]
    loader = _loader(files, features, shuffle_buffer=48, seed=3)
    source = training_batches(loader, CPU, LIMIT, depth)
    tracked = TrackedIterator(source, source, LIMIT)
    batches, positions = [], []
    for k, batch in enumerate(tracked, start=1):
        batches.append(batch)
        positions.append(tracked.position_after(k))
    return source, batches, positions


def test_prefetched_batches_and_positions_equal_the_inline_ones(files, features) -> None:
    inline, batches, positions = _tracked(files, features, 0)
    ahead, fetched, fetched_positions = _tracked(files, features, 3)
    assert isinstance(inline, InlineBatches) and isinstance(ahead, PrefetchedBatches)
    assert len(fetched) == LIMIT
    assert _uids(fetched) == _uids(batches)
    for mine, theirs in zip(fetched, batches, strict=True):
        assert torch.equal(mine.click, theirs.click)
        assert mine.features._length_per_key is not None  # host lengths survive the transfer
        assert mine.features.length_per_key() == theirs.features.length_per_key()
        assert mine.clicked_rows is not None and theirs.clicked_rows is not None
        assert torch.equal(mine.clicked_rows, theirs.clicked_rows)
    assert fetched_positions == positions
    assert positions[9]["epoch"] != positions[11]["epoch"]  # an epoch end is among them
    # resuming at a recorded position continues with exactly the batches that followed
    resumed = _loader(files, features, shuffle_buffer=48, seed=3)
    resumed.load_state_dict(fetched_positions[6])
    rest = training_batches(resumed, CPU, LIMIT - 7, 2)
    assert _uids(list(rest)) == _uids(batches[7:])


def test_folded_ids_counted_in_the_worker_reach_the_trainers_loader(tmp_path, features) -> None:
    uids = np.arange(48)
    items = (uids * 7) % 50000
    items[[3, 30, 31]] = [10**9, -5, 10**12]  # out of the item table: hashed and counted
    path = _write(tmp_path / "oov.parquet", uids, features, {"item_id": items})
    counts = []
    for depth in (0, 2):
        loader = _loader([path], features, batch_size=8)
        assert len(list(training_batches(loader, CPU, 6, depth))) == 6
        counts.append(loader.oov_counts)
    assert counts[0] == counts[1] and counts[1]["item_id"] == 3


def test_a_loader_error_in_the_worker_is_raised_to_the_trainer(tmp_path, features) -> None:
    uids = np.arange(40)
    click = (uids % 5 == 0).astype(np.int8)
    click[23] = 2
    bad = _write(tmp_path / "bad.parquet", uids, features, {schema.CLICK: click})
    ahead = PrefetchedBatches(_loader([bad], features, batch_size=8), CPU, 4, depth=2)
    with pytest.raises(
        DataError, match=r"bad\.parquet: row 23: column 'click': label 2 is not"
    ) as e:
        list(ahead)
    assert (Path(str(e.value.file)).name, e.value.row, e.value.column) == (
        "bad.parquet",
        23,
        "click",
    )


def _corrupt_a_click(
    world: Path, tmp_path: Path, split: str = "train", part: int = 1, row: int = 4321
) -> tuple[Path, str, int]:
    """A copy of `world` whose `part`-th file of `split` has click = 2 at `row`."""
    copy = tmp_path / f"world_{split}"
    shutil.copytree(world, copy)
    path = sorted((copy / split).glob("*.parquet"))[part]
    table = pq.read_table(path)
    click = table.column(schema.CLICK).to_numpy().copy()
    click[row] = 2
    i = table.schema.get_field_index(schema.CLICK)
    table = table.set_column(i, table.schema.field(i), pc.cast(click, table.schema.field(i).type))
    pq.write_table(table, path)
    return copy, path.name, row


def test_training_with_and_without_prefetch_is_identical(tiny_world, tmp_path) -> None:
    env = init_distributed("cpu")
    try:
        runs = []
        for depth in (0, 2):
            cfg = tiny_config(
                tiny_world,
                tmp_path / f"depth{depth}",
                "train.max_steps=12",
                "train.eval_batches=0",
                "train.select_best_on=null",
                f"data.prefetch_batches={depth}",
            )
            runs.append(train(cfg, env))
        assert runs[0]["last_logged"] == runs[1]["last_logged"]
        assert runs[0]["oov_counts"] == runs[1]["oov_counts"]
        world, name, row = _corrupt_a_click(tiny_world, tmp_path)
        cfg = tiny_config(
            world,
            tmp_path / "bad",
            "train.max_steps=400",
            "train.eval_batches=0",
            "train.select_best_on=null",
            "data.prefetch_batches=2",
        )
        with pytest.raises(DataError, match=rf"{name}: row {row}: column 'click': label 2"):
            train(cfg, env)
    finally:
        shutdown()


def test_an_error_mid_training_stops_the_read_ahead_worker(tiny_world, tmp_path) -> None:
    # a bad validation day fails the job at its first validation, while the worker that reads
    # the training batches ahead is running; the traceback kept in `failure` still references
    # the trainer's frames, so only an explicit close stops the worker
    world, name, row = _corrupt_a_click(tiny_world, tmp_path, "val", part=0, row=3)
    cfg = tiny_config(
        world,
        tmp_path / "run",
        "train.max_steps=8",
        "train.eval_every=2",
        "train.select_best_on=null",
        "data.prefetch_batches=2",
    )
    assert multiprocessing.active_children() == []
    env = init_distributed("cpu")
    try:
        with pytest.raises(
            DataError, match=rf"{name}: row {row}: column 'click': label 2"
        ) as failure:
            train(cfg, env)
        assert failure.tb is not None  # the trainer's frames are still referenced here
        assert multiprocessing.active_children() == []
    finally:
        shutdown()


def test_the_default_prefetches_for_a_gpu_and_reads_inline_on_the_cpu(files, features) -> None:
    assert load_config(CONFIG).data.prefetch_batches is None
    on_cpu = training_batches(_loader(files, features), CPU, 3, None)
    assert isinstance(on_cpu, InlineBatches)
    no_cuda = pytest.warns(UserWarning, match="pin_memory")  # a CPU torch: nothing to pin for
    with no_cuda if not torch.cuda.is_available() else contextlib.nullcontext():
        for_gpu = training_batches(_loader(files, features), torch.device("cuda"), 3, None)
    assert isinstance(for_gpu, PrefetchedBatches)
    assert for_gpu._data.prefetch_factor == 2 and for_gpu._data.pin_memory
    for_gpu.close()
