"""The third-party warnings we know to be harmless here, by name, each with the reason.

`install()` runs at our entry points (the CLI, the benchmarks, scripts). It silences exactly the
messages listed in BENIGN, from the logger or warning category that emits them; every other
warning, and these same messages from any other logger or category, still shows. To see one
again, delete its entry: there is deliberately no switch.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class BenignWarning:
    """One known message: `message` is a regex matched at the start of the text; `logger` names
    the logging.Logger that emits it, or None for a `warnings.warn` of `category`."""

    name: str
    message: str
    reason: str
    logger: str | None = None
    category: type[Warning] = Warning


BENIGN: tuple[BenignWarning, ...] = (
    BenignWarning(
        "planner-dense-estimate",
        r"There is a known issue with TorchRec's dense tensor size calculation",
        "logged whenever a plan has no dense_tensor_estimate; our plan configs reserve dense "
        "memory with topology.dense_reserve_gb instead",
        logger="torchrec.distributed.planner.storage_reservations",
    ),
    BenignWarning(
        "sharding-spec-not-found",
        r"Sharding spec not found for ",
        "data_parallel tables are replicated and have no sharding spec by design; torchrec's "
        "plan check logs one line per such table",
        logger="root",
    ),
    BenignWarning(
        "data-parallel-caching",
        r"Sharding Type is data_parallel, caching params will be ignored",
        "the plan's cache settings apply to sharded tables only; torchrec says so once per "
        "replicated table and rank",
        logger="torchrec.distributed.utils",
    ),
    BenignWarning(
        "ddp-broadcast-buffers",
        r"`broadcast_buffers` is deprecated",
        "torchrec 1.8 builds its DistributedDataParallel wrappers with the old argument; "
        "nothing of ours passes it",
        category=FutureWarning,
    ),
    BenignWarning(
        "sharded-tensor-deprecated",
        r"Please use DTensor instead and we are deprecating ShardedTensor",
        "torchrec 1.8's sharded tables are ShardedTensors; DCP warns on every checkpoint load",
        category=FutureWarning,
    ),
    BenignWarning(
        "dcp-single-process-load",
        r"torch.distributed is disabled, unavailable or uninitialized, assuming the intent is "
        r"to load in a single process",
        "the benchmarks and scripts load a checkpoint whole in one process on purpose "
        "(no_dist=True); the CLI's sharded loads always run in a process group",
        category=UserWarning,
    ),
    BenignWarning(
        "fx-tracing-ambiguous",
        r"is_fx_tracing will return true for both fx.symbolic_trace and torch.export",
        "torchrec's modules call torch.fx's is_fx_tracing; torch notes once per process that "
        "its meaning changed, which concerns torchrec, not us",
        logger="torch.fx._symbolic_trace",
    ),
    BenignWarning(
        "fbgemm-dense-lookup-autograd",
        r"fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel was not registered",
        "fbgemm's CPU kernel builds its own autograd graph inside the CPU key, so torch's "
        "fallback only adds this warning hook; the gradient is fbgemm's (tests/test_benign_"
        "warnings.py checks it against nn.EmbeddingBag)",
        category=UserWarning,
    ),
)


class _DropKnown(logging.Filter):
    """Drops the records of one logger whose message matches one of its benign patterns."""

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p.match(text) for p in self.patterns)


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == "root" else logging.getLogger(name)


def install() -> None:
    """Silence the BENIGN messages in this process. Idempotent; call it at an entry point."""
    by_logger: dict[str, list[re.Pattern[str]]] = {}
    for known in BENIGN:
        if known.logger is None:
            warnings.filterwarnings("ignore", message=known.message, category=known.category)
        else:
            by_logger.setdefault(known.logger, []).append(re.compile(known.message))
    for name, patterns in by_logger.items():
        logger = _logger(name)
        for f in [f for f in logger.filters if isinstance(f, _DropKnown)]:
            logger.removeFilter(f)
        logger.addFilter(_DropKnown(patterns))
