"""The console: known-benign third-party warnings are silenced (and only those), progress in a
log is a bounded number of lines, and a 60-step `dmmp-rec train` log stays short."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import warnings

import pytest
import torch
from support import REPO, tiny_overrides

from dmmp_rec.console import benign_warnings
from dmmp_rec.console.benign_warnings import BENIGN
from dmmp_rec.console.progress import LineProgress, advance_lines, progress_bar, track

# The text each third-party library really prints (torchrec 1.8.0, torch 2.13, fbgemm 1.8.0)
SAMPLES = {
    "planner-dense-estimate": "There is a known issue with TorchRec's dense tensor size "
    "calculation in dry run scenarios, where tensors are not materialized.",
    "sharding-spec-not-found": "Sharding spec not found for sparse.ebc.t_user_age",
    "data-parallel-caching": "Sharding Type is data_parallel, caching params will be ignored",
    "ddp-broadcast-buffers": "`broadcast_buffers` is deprecated. Use `forward_sync_buffers`.",
    "sharded-tensor-deprecated": "Please use DTensor instead and we are deprecating ShardedTensor.",
    "dcp-single-process-load": "torch.distributed is disabled, unavailable or uninitialized, "
    "assuming the intent is to load in a single process.",
    "fx-tracing-ambiguous": "is_fx_tracing will return true for both fx.symbolic_trace and "
    "torch.export. Please use is_fx_tracing_symbolic_tracing()",
    "fbgemm-dense-lookup-autograd": "fbgemm::dense_embedding_codegen_lookup_function: an "
    "autograd kernel was not registered to the Autograd key(s) but we are trying to backprop",
}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def root_records():
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_every_entry_has_a_reason_and_a_real_sample() -> None:
    names = [w.name for w in BENIGN]
    assert len(set(names)) == len(names)
    assert set(names) == set(SAMPLES)
    for known in BENIGN:
        assert known.reason and "\n" not in known.reason
        assert re.match(known.message, SAMPLES[known.name]), known.name


def test_named_warnings_are_silenced_and_unknown_ones_show() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        benign_warnings.install()
        for known in BENIGN:
            if known.logger is None:
                warnings.warn(SAMPLES[known.name], known.category, stacklevel=1)
        assert seen == []
        warnings.warn("a warning nobody listed", UserWarning, stacklevel=1)
        # a listed text under another category is not the listed warning
        warnings.warn(SAMPLES["ddp-broadcast-buffers"], UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == [
        "a warning nobody listed",
        SAMPLES["ddp-broadcast-buffers"],
    ]


def test_named_log_records_are_dropped_and_unknown_ones_pass(root_records: _Records) -> None:
    benign_warnings.install()
    benign_warnings.install()  # idempotent: still one filter per logger
    for known in BENIGN:
        if known.logger is not None:
            logger = benign_warnings._logger(known.logger)
            assert sum(isinstance(f, benign_warnings._DropKnown) for f in logger.filters) == 1
            logger.warning(SAMPLES[known.name])
    assert root_records.messages == []
    logging.getLogger("torchrec.distributed.utils").warning("Sharding Type is row_wise, new")
    # a listed text from another logger passes
    logging.getLogger("torchrec.distributed.other").warning(SAMPLES["data-parallel-caching"])
    assert root_records.messages == [
        "Sharding Type is row_wise, new",
        SAMPLES["data-parallel-caching"],
    ]


def test_fbgemm_dense_lookup_warning_is_silenced_and_its_gradient_is_right() -> None:
    """The reason given for silencing it: fbgemm's CPU kernel carries its own backward."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        DenseTableBatchedEmbeddingBagsCodegen,
    )

    torch.manual_seed(0)
    tbe = DenseTableBatchedEmbeddingBagsCodegen(
        [(10, 4), (7, 8)], pooling_mode=PoolingMode.SUM, use_cpu=True
    )
    ref = [torch.nn.EmbeddingBag(10, 4, mode="sum"), torch.nn.EmbeddingBag(7, 8, mode="sum")]
    for bag, table in zip(ref, tbe.split_embedding_weights(), strict=True):
        bag.weight.data.copy_(table.detach())
    ids = torch.tensor([1, 2, 3, 4, 0, 6, 5])
    offsets = torch.tensor([0, 3, 4, 6, 7])  # 2 tables x 2 bags
    grad = torch.randn(2, 12)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        tbe(ids, offsets).backward(grad)
        assert any("dense_embedding_codegen_lookup_function" in str(w.message) for w in seen)
        seen.clear()
        benign_warnings.install()
        tbe.weights.grad = None
        tbe(ids, offsets).backward(grad)
    assert seen == []
    out = torch.cat(
        [ref[0](ids[:4], torch.tensor([0, 3])), ref[1](ids[4:], torch.tensor([0, 2]))], 1
    )
    out.backward(grad)
    expected = torch.cat([b.weight.grad.reshape(-1) for b in ref])
    torch.testing.assert_close(tbe.weights.grad.reshape(-1), expected)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_prints_one_line_per_tenth_of_the_total() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(1000, "train", "step", stream=out, clock=clock, min_s=0)
    for _ in range(1000):
        clock.now += 0.01
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10 == bar.lines
    assert lines[0].startswith("train: 100/1000 steps (10%)")
    assert lines[-1].startswith("train: 1000/1000 steps (100%)")


def test_a_quick_pass_prints_few_lines() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(1000, "encoding items", "batch", stream=out, clock=clock, min_s=5)
    for _ in range(1000):
        clock.now += 0.012  # 12 s in all: 10% crossings at most every 5 s
        bar.update(1)
    bar.close()
    # 10% crossings wait until 5 s have passed since the last line: at 5.004 s, 10.008 s, end
    assert [s.split(",")[0] for s in out.getvalue().splitlines()] == [
        "encoding items: 417/1000 batches (42%)",
        "encoding items: 834/1000 batches (83%)",
        "encoding items: 1000/1000 batches (100%)",
    ]


def test_line_progress_is_bounded_by_time_without_a_total() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(None, "scoring test", "batch", stream=out, clock=clock, every_s=30)
    for _ in range(600):
        clock.now += 1.0
        bar.update(1)
    bar.set_postfix(rows=12)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 600 // 30 + 1  # one every 30 s, then the final state once
    assert lines[-1] == "scoring test: 600 batches, 600 s, 1.0 batch/s, rows 12"


def test_advancing_through_a_file_shows_lines_and_the_share_of_bytes_read() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(None, "sample_skeleton", "line", stream=out, clock=clock, every_s=10)
    for lines, position in ((4000, 250), (9000, 500), (12000, 1000)):
        clock.now += 10.0
        advance_lines(bar, lines, position, 1000, rows_written=f"{lines - 1:,}")
    advance_lines(None, 5, 5, 10)  # progress off: nothing to move
    bar.close()
    assert out.getvalue().splitlines() == [
        "sample_skeleton: 4000 lines, 10 s, 400 line/s, read 25.0% of file, rows_written 3,999",
        "sample_skeleton: 9000 lines, 20 s, 450 line/s, read 50.0% of file, rows_written 8,999",
        "sample_skeleton: 12000 lines, 30 s, 400 line/s, read 100.0% of file, rows_written 11,999",
    ]


def test_progress_off_a_terminal_is_lines_and_tracks_every_item() -> None:
    out = io.StringIO()
    assert isinstance(progress_bar(5, "x", "step", stream=out), LineProgress)
    items = list(track(range(250), "encoding items", "batch", stream=out))
    assert items == list(range(250))
    assert 1 <= len(out.getvalue().splitlines()) <= 100 / 10 + 2
    assert list(track([1, 2], "off", "batch", enabled=False, stream=out)) == [1, 2]


def test_sixty_step_train_log_is_short(tiny_world, tmp_path) -> None:
    """The goal of issue 12: <= 2 warning lines and <= 30 progress lines, output not a TTY."""
    argv = ["train", "--config", "configs/synthetic.yaml"]
    argv += tiny_overrides(tiny_world, tmp_path / "run", "train.max_steps=60")
    result = subprocess.run(
        [sys.executable, "-m", "dmmp_rec.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    warning_lines = [s for s in lines if re.search(r"warn|W\d{4} ", s, re.IGNORECASE)]
    progress_lines = [s for s in lines if s.startswith("train: ")]
    assert len(warning_lines) <= 2, warning_lines
    assert 1 <= len(progress_lines) <= 30, progress_lines
    assert progress_lines[-1].startswith("train: 60/60 steps (100%)")
    assert "\r" not in result.stderr
