"""Issue 17: evaluation gathers the scored rows to rank 0 alone (`collectives.on_main`), and
its metrics equal those of the all-ranks gather it replaced, on 2 gloo ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch.distributed as dist
from support import spawn_ranks

from dmmp_rec.distributed.collectives import gather_to_main, on_main
from dmmp_rec.distributed.env import DistEnv
from dmmp_rec.eval.oracle_metrics import summarise
from dmmp_rec.eval.records import PerUser, RankerScores
from dmmp_rec.train.validation import teacher_and_student_aucs


def _gather_rows_before(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """collectives.gather_rows as it was at 4ab1f98: every rank's rows to every rank."""
    parts: list[dict[str, np.ndarray] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, arrays)
    return {k: np.concatenate([p[k] for p in parts if p is not None]) for k in arrays}


def _impressions(rank: int) -> dict[str, np.ndarray]:
    """Rank-dependent scored impressions (the ranks' shares differ in size, as they can)."""
    rng = np.random.default_rng(rank)
    n = 400 + 37 * rank
    click = (rng.random(n) < 0.3).astype(np.float32)
    conversion = click * (rng.random(n) < 0.4)
    scores = {k: rng.random(n).astype(np.float32) for k in ("pctr", "pcvr", "pctcvr", "s_c")}
    return {"click": click, "conversion": conversion.astype(np.float32), **scores}


def _per_user(rank: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(10 + rank)
    n = 50 + 3 * rank
    values = rng.random((n, 2))
    values[rng.random(n) < 0.2] = np.nan  # users without the event: skipped by the mean
    return {"model/all_users/recall_click": values, "popularity/sample/exp_clicks": values * 2}


def _summarise(rows: dict[str, np.ndarray], ks: list[int]) -> dict[str, RankerScores]:
    """The summary of gathered string-keyed rows, as evaluation computes it on rank 0."""
    return summarise(PerUser.from_arrays(rows).values, ks)


def _compare_on_two_ranks(env: DistEnv, out: Path) -> None:
    calls: list[int] = []

    def aucs(rows: dict[str, np.ndarray]) -> dict[str, float]:
        calls.append(len(rows["click"]))
        return teacher_and_student_aucs(rows)

    now = on_main(_impressions(env.rank), aucs)
    before = teacher_and_student_aucs(_gather_rows_before(_impressions(env.rank)))
    ks = [1, 2]
    users_now = on_main(_per_user(env.rank), lambda rows: _summarise(rows, ks))
    users_before = _summarise(_gather_rows_before(_per_user(env.rank)), ks)
    on_rank = gather_to_main(_impressions(env.rank))
    failed = ""
    try:
        on_main(_per_user(env.rank), lambda rows: rows["no such key"])
    except KeyError as e:
        failed = str(e)
    result = {
        "now": now,
        "before": before,
        "users_equal": users_now == users_before,
        "computed_rows": calls,
        "gathered": None if on_rank is None else len(on_rank["click"]),
        "failed": failed,
    }
    (out / f"rank{env.rank}.json").write_text(json.dumps(result))


def test_metrics_on_rank_0_equal_the_all_ranks_gather(tmp_path: Path) -> None:
    spawn_ranks(_compare_on_two_ranks, 2, tmp_path)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    total = 400 + 437
    for rank, result in enumerate(results):
        assert result["now"] == result["before"]  # the same floats, every rank
        assert result["now"]["val/rows"] == total
        assert result["users_equal"]
        assert result["failed"] == "'no such key'"  # rank 0's error reaches every rank
        # only rank 0 holds every rank's rows and computes the metrics
        assert result["computed_rows"] == ([total] if rank == 0 else [])
        assert result["gathered"] == (total if rank == 0 else None)
