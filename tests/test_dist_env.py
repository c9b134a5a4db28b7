"""The process group's store: keys of one restart attempt never leak into the next."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch.distributed as dist

from dmmp_rec.distributed.env import _attempt_store


def test_restart_attempts_see_separate_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=timedelta(seconds=10))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")  # as torchrun sets it

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = _attempt_store(1, 2, timedelta(seconds=10))
    first.set("rank_1", "127.0.0.1:46471")  # a worker's address, then the worker dies

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    second = _attempt_store(0, 2, timedelta(seconds=10))
    assert not second.check(["rank_1"])  # the restarted group cannot read the dead address
    second.set("rank_1", "127.0.0.1:50000")
    assert first.get("rank_1") == b"127.0.0.1:46471"
    assert dist.PrefixStore("dmmp_rec/attempt_1", agent).get("rank_1") == b"127.0.0.1:50000"
