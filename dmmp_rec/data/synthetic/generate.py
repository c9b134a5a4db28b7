"""Generate the seeded synthetic world (DESIGN.md, "Data") and write it to disk.

Output under `out`:
- train/, val/, test/: Parquet impression logs split by day (`dmmp_rec.data.schema` layout),
  one part file per chunk of at most `synthetic.chunk_rows` rows;
- items.parquet: every item's item-feature columns, row i = item id i (full-corpus retrieval);
- users.parquet: every user's user and context features as of the start of the test period,
  row i = user id i; the context is fixed at ctx_hour = EVAL_HOUR (world.EVAL_HOUR, also in
  world.json), the hour GroundTruth scores with by default. Histories are static snapshots,
  so they are the same as in the logs;
- ground_truth.npz: the hidden parameters (see `dmmp_rec.data.synthetic.world.GroundTruth`);
- world.json: realised rates, bait / gem properties, sizes, split counts, seed and constants.

Same seed and sizes give byte-identical files. Memory is bounded by the chunk size and the
number of users and items, never by the number of impressions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dmmp_rec.config import DmmpConfig, to_dict
from dmmp_rec.console.progress import progress_bar
from dmmp_rec.data.catalogue import ITEMS_FILE, USERS_FILE
from dmmp_rec.data.schema import (
    DAY,
    IS_RAND,
    ROW_GROUP_ROWS,
    SPLITS,
    arrow_schema,
    part_path,
    split_dir,
)
from dmmp_rec.data.synthetic import entities, log, world
from dmmp_rec.data.synthetic.cross import HistoryCrosses
from dmmp_rec.data.synthetic.entities import World, build_entities
from dmmp_rec.data.synthetic.features import cardinalities, feature_column
from dmmp_rec.data.synthetic.log import Impressions, log_rows
from dmmp_rec.data.synthetic.stats import LogStats

WORLD_FILE = "world.json"


def day_bounds(num_impressions: int, num_days: int) -> np.ndarray:
    """Global row index where each day starts (num_days + 1 entries); days differ by <= 1 row."""
    per_day = np.full(num_days, num_impressions // num_days, np.int64)
    per_day[: num_impressions % num_days] += 1
    return np.concatenate([[0], np.cumsum(per_day)])


def split_of_day(day: int, num_days: int, val_days: int, test_days: int) -> str:
    """Time split: the last test_days days are test, the val_days before them val."""
    if day >= num_days - test_days:
        return "test"
    if day >= num_days - test_days - val_days:
        return "val"
    return "train"


def impression_table(world_: World, schema: pa.Schema, imp: Impressions, day: int) -> pa.Table:
    """The Parquet table of one chunk, in `schema`'s column order."""
    columns = {
        "click": pa.array(imp.click, pa.int8()),
        "conversion": pa.array(imp.conversion, pa.int8()),
        DAY: pa.array(np.full(len(imp), day, np.int32)),
        IS_RAND: pa.array(imp.is_rand, pa.bool_()),
    }
    arrays = [
        columns[f.name]
        if f.name in columns
        else feature_column(world_, f.name, imp.user, imp.item, imp.hour)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _entity_table(
    world_: World, schema: pa.Schema, names: list[str], user: np.ndarray, item: np.ndarray
) -> pa.Table:
    hour = np.full(len(user), world.EVAL_HOUR, np.int64)
    sub = pa.schema([schema.field(n) for n in names])
    return pa.Table.from_arrays(
        [feature_column(world_, n, user, item, hour) for n in names], schema=sub
    )


def _constants() -> dict[str, object]:
    """The world's fixed behavioural constants, recorded for reproducibility."""
    out: dict[str, object] = {}
    for module in (world, entities, log):
        for name, value in vars(module).items():
            if (
                name.isupper()
                and not name.startswith("_")
                and isinstance(value, int | float | tuple)
            ):
                out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _clear_parts(out: Path) -> None:
    """Remove part files a previous (maybe larger) run left in the split directories."""
    for split in SPLITS:
        for f in split_dir(out, split).glob("part-*.parquet"):
            f.unlink()


def _write_logs(
    cfg: DmmpConfig, world_: World, schema: pa.Schema, out: Path, progress: bool
) -> LogStats:
    """The impression logs, day by day in chunks of `synthetic.chunk_rows`, into the split each
    day belongs to; returns what was logged."""
    syn = cfg.synthetic
    for split in SPLITS:
        split_dir(out, split).mkdir(parents=True, exist_ok=True)
    _clear_parts(out)
    stats = LogStats(syn.num_users, syn.num_items)
    parts = dict.fromkeys(SPLITS, 0)
    bounds = day_bounds(syn.num_impressions, syn.num_days)
    bar = progress_bar(syn.num_impressions, "synth", "row") if progress else None
    for day in range(syn.num_days):
        split = split_of_day(day, syn.num_days, syn.val_days, syn.test_days)
        for start in range(int(bounds[day]), int(bounds[day + 1]), syn.chunk_rows):
            stop = min(start + syn.chunk_rows, int(bounds[day + 1]))
            imp = log_rows(world_, cfg.seed, start, stop)
            table = impression_table(world_, schema, imp, day)
            pq.write_table(
                table, part_path(out, split, parts[split]), row_group_size=ROW_GROUP_ROWS
            )
            parts[split] += 1
            stats.add(split, day, imp)
            if bar is not None:
                bar.update(stop - start)
    if bar is not None:
        bar.close()
    return stats


def _write_catalogues(cfg: DmmpConfig, world_: World, schema: pa.Schema, out: Path) -> None:
    """items.parquet and users.parquet: every item's and every user's features."""
    syn = cfg.synthetic
    names = {g: [s.name for s in cfg.features.group(g)] for g in ("user", "item", "context")}
    items = np.arange(syn.num_items, dtype=np.int64)
    users = np.arange(syn.num_users, dtype=np.int64)
    pq.write_table(
        _entity_table(world_, schema, names["item"], np.zeros_like(items), items),
        out / ITEMS_FILE,
    )
    pq.write_table(
        _entity_table(
            world_, schema, names["user"] + names["context"], users, np.zeros_like(users)
        ),
        out / USERS_FILE,
    )


def generate_world(cfg: DmmpConfig, out: str | Path, progress: bool = True) -> dict:
    """Generate the world of `cfg.synthetic` with `cfg.seed` into `out`; returns world.json."""
    out = Path(out)
    syn = cfg.synthetic
    card = cardinalities(cfg)
    world_ = build_entities(cfg.seed, syn.num_users, syn.num_items, card, syn.purchase_rho_sd)
    cross = {s.name: s.cardinality for s in cfg.features.group("cross")}
    if cross:  # observables only: the static history and the items' category and brand
        u, it = world_.users, world_.items
        world_.crosses = HistoryCrosses(u.hist_offsets, u.hist_items, it.category, it.brand, cross)
    schema = arrow_schema(cfg.features)
    stats = _write_logs(cfg, world_, schema, out, progress)
    _write_catalogues(cfg, world_, schema, out)
    world_.truth.save(out)

    summary = {
        "seed": cfg.seed,
        "sizes": to_dict(syn),
        "eval_hour": world.EVAL_HOUR,
        "feature_cardinalities": to_dict(card),
        "mean_history_length": float(np.diff(world_.users.hist_offsets).mean()),
        "purchase_rho_realised": {
            "mean": float(world_.truth.purchase_rho.mean()),
            "sd": float(world_.truth.purchase_rho.std()),
        },
        **stats.summary(world_, cfg.seed),
        "constants": _constants(),
    }
    (out / WORLD_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
