"""Save and load a torchrec ShardingPlan as JSON (torchrec has no public format for it).

The format (documented in docs/sharding.md) is plain JSON:

    {"format": "dmmp-rec-sharding-plan", "version": 1,
     "meta": {"world_size": 64, "device": "cuda", "torchrec_version": "1.8.0",
              "config": "configs/production.yaml", "tables": ["t_user_id", ...], ...},
     "stats": {...},                      # optional, informative only
     "modules": {"sparse.ebc": {"t_user_id": {
         "sharding_type": "row_wise", "compute_kernel": "fused", "ranks": [0, 1, ...],
         "num_embeddings": 500000000, "embedding_dim": 128,
         "shards": [{"offsets": [0, 0], "sizes": [7812500, 128], "placement": "rank:0/cuda:0"}],
         "cache_params": null, "enforce_hbm": null, "stochastic_rounding": null,
         "bounds_check_mode": null, "output_dtype": null}}}}

`shards` is null for data_parallel tables. Loading rebuilds the exact ParameterSharding objects
(EnumerableShardingSpec of ShardMetadata), so `train` reproduces the saved plan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torchrec
from torch.distributed._shard.metadata import ShardMetadata
from torchrec.distributed.types import (
    BoundsCheckMode,
    CacheAlgorithm,
    CacheParams,
    DataType,
    EmbeddingModuleShardingPlan,
    EnumerableShardingSpec,
    ParameterSharding,
    ShardingPlan,
    ShardingType,
)

from dmmp_rec.distributed.planning.config import PlanError

FORMAT = "dmmp-rec-sharding-plan"
VERSION = 1
_CACHE_KEYS = ("algorithm", "load_factor", "reserved_memory", "precision", "prefetch_pipeline")


def _enum_name(value: Any) -> str | None:
    return None if value is None else value.name


def _cache_to_json(cache: CacheParams | None, where: str) -> dict[str, Any] | None:
    if cache is None:
        return None
    if cache.multipass_prefetch_config is not None:
        raise PlanError(f"{where}: multipass_prefetch_config is not supported by our plan format")
    return {
        "algorithm": _enum_name(cache.algorithm),
        "load_factor": cache.load_factor,
        "reserved_memory": cache.reserved_memory,
        "precision": _enum_name(cache.precision),
        "prefetch_pipeline": cache.prefetch_pipeline,
    }


def _sharding_to_json(ps: ParameterSharding, where: str) -> dict[str, Any]:
    if ps.key_value_params is not None:
        raise PlanError(f"{where}: key_value_params (SSD tables) are not supported")
    shards = None
    if ps.sharding_spec is not None:
        if not isinstance(ps.sharding_spec, EnumerableShardingSpec):
            raise PlanError(f"{where}: unsupported sharding spec {type(ps.sharding_spec).__name__}")
        shards = [
            {
                "offsets": list(s.shard_offsets),
                "sizes": list(s.shard_sizes),
                "placement": str(s.placement),
            }
            for s in ps.sharding_spec.shards
        ]
    return {
        "sharding_type": ps.sharding_type,
        "compute_kernel": ps.compute_kernel,
        "ranks": None if ps.ranks is None else [int(r) for r in ps.ranks],
        "shards": shards,
        "cache_params": _cache_to_json(ps.cache_params, where),
        "enforce_hbm": ps.enforce_hbm,
        "stochastic_rounding": ps.stochastic_rounding,
        "bounds_check_mode": _enum_name(ps.bounds_check_mode),
        "output_dtype": _enum_name(ps.output_dtype),
    }


def _table_shape(entry: dict[str, Any]) -> tuple[int, int] | None:
    """Rows and columns of the whole table, from its shards (None for data_parallel)."""
    shards = entry["shards"]
    if not shards:
        return None
    rows = max(s["offsets"][0] + s["sizes"][0] for s in shards)
    cols = max(s["offsets"][1] + s["sizes"][1] for s in shards)
    return rows, cols


def plan_to_dict(
    plan: ShardingPlan, meta: dict[str, Any], stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON-ready form of `plan` (the format in the module docstring).

    Args:
        plan (ShardingPlan): torchrec's plan.
        meta (dict[str, Any]): the plan's meta; must hold at least world_size (PlanError
            otherwise); torchrec_version and the table names are added.
        stats (dict[str, Any] | None): the planner's estimates, informative only; None to omit.

    Returns:
        dict[str, Any]: format, version, meta, stats (when given) and modules.
    """
    if "world_size" not in meta:
        raise PlanError("plan meta must include world_size")
    modules: dict[str, dict[str, Any]] = {}
    tables = []
    for path, module_plan in plan.plan.items():
        modules[path] = {}
        for name, ps in module_plan.items():  # type: ignore[attr-defined]
            entry = _sharding_to_json(ps, f"{path}.{name}")
            shape = _table_shape(entry)
            entry["num_embeddings"], entry["embedding_dim"] = shape if shape else (None, None)
            modules[path][name] = entry
            tables.append(name)
    full_meta = {"torchrec_version": torchrec.__version__, "tables": tables, **meta}
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": full_meta}
    if stats is not None:
        out["stats"] = stats
    out["modules"] = modules
    return out


def _stats_of(result: Any) -> dict[str, Any] | None:
    ranks = getattr(result, "ranks", None)
    if ranks is None:
        return None
    return {
        "step_time_ms": round(result.step_time_ms, 6),
        "per_rank": [
            {
                "rank": r.rank,
                "hbm_used": r.hbm_used,
                "ddr_used": r.ddr_used,
                "hbm_cap": r.hbm_cap,
                "ddr_cap": r.ddr_cap,
                "total_ms": round(r.total_ms, 6),
            }
            for r in ranks
        ],
    }


def _dumps(obj: Any, indent: int = 0, width: int = 140) -> str:
    """JSON with one item per line, except that short mappings and lists of numbers or names
    stay on one line."""
    flat = json.dumps(obj)
    scalars = isinstance(obj, list) and not any(isinstance(v, dict | list) for v in obj)
    if len(flat) + indent <= width or scalars or not isinstance(obj, dict | list) or not obj:
        return flat
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, indent + 1, width)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{_dumps(v, indent + 1, width)}" for v in obj]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def save_plan(result_or_plan: Any, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a PlanResult (plan + stats) or a bare ShardingPlan as our JSON, atomically.

    Args:
        result_or_plan (Any): a PlanResult, whose own meta (world size, device, config
            sources, tables) is the base, or a bare ShardingPlan.
        path (str | Path): the JSON file to write (parent directories are made).
        meta (dict[str, Any] | None): meta to add (or, for a bare plan, all of it: world_size
            and device at least).

    Returns:
        Path: the written file.
    """
    if isinstance(result_or_plan, ShardingPlan):
        plan, base, stats = result_or_plan, {}, None
    else:
        plan, base = result_or_plan.plan, dict(getattr(result_or_plan, "meta", {}))
        stats = _stats_of(result_or_plan)
    data = plan_to_dict(plan, {**base, **(meta or {})}, stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(_dumps(data) + "\n")
    tmp.replace(path)
    return path


def _enum(cls: Any, name: str | None, where: str) -> Any:
    if name is None:
        return None
    try:
        return cls[name]
    except KeyError:
        raise PlanError(f"{where}: unknown {cls.__name__} {name!r}") from None


def _cache_from_json(raw: dict[str, Any] | None, where: str) -> CacheParams | None:
    if raw is None:
        return None
    unknown = set(raw) - set(_CACHE_KEYS)
    if unknown:
        raise PlanError(f"{where}: unknown cache_params keys {sorted(unknown)}")
    return CacheParams(
        algorithm=_enum(CacheAlgorithm, raw.get("algorithm"), f"{where}.algorithm"),
        load_factor=raw.get("load_factor"),
        reserved_memory=raw.get("reserved_memory"),
        precision=_enum(DataType, raw.get("precision"), f"{where}.precision"),
        prefetch_pipeline=raw.get("prefetch_pipeline"),
    )


def _sharding_from_json(raw: dict[str, Any], where: str, world_size: int) -> ParameterSharding:
    try:
        sharding_type, kernel = raw["sharding_type"], raw["compute_kernel"]
        ranks, shards = raw["ranks"], raw["shards"]
    except KeyError as e:
        raise PlanError(f"{where}: missing key {e.args[0]!r}") from None
    if sharding_type not in {t.value for t in ShardingType}:
        raise PlanError(f"{where}.sharding_type: unknown sharding type {sharding_type!r}")
    bad = [r for r in ranks or [] if not 0 <= r < world_size]
    if bad:
        raise PlanError(f"{where}.ranks: ranks {bad} are outside world size {world_size}")
    spec = None
    if shards is not None:
        metas = []
        for i, s in enumerate(shards):
            try:
                metas.append(ShardMetadata(s["offsets"], s["sizes"], s["placement"]))
            except (KeyError, ValueError, TypeError) as e:
                raise PlanError(f"{where}.shards.{i}: bad shard {s!r}: {e}") from None
        spec = EnumerableShardingSpec(metas)
    return ParameterSharding(
        sharding_type=sharding_type,
        compute_kernel=kernel,
        ranks=ranks,
        sharding_spec=spec,
        cache_params=_cache_from_json(raw.get("cache_params"), f"{where}.cache_params"),
        enforce_hbm=raw.get("enforce_hbm"),
        stochastic_rounding=raw.get("stochastic_rounding"),
        bounds_check_mode=_enum(
            BoundsCheckMode, raw.get("bounds_check_mode"), f"{where}.bounds_check_mode"
        ),
        output_dtype=_enum(DataType, raw.get("output_dtype"), f"{where}.output_dtype"),
    )


def _check_tables(
    path: Path,
    modules: dict[str, Any],
    table_names: list[str],
    expected_shapes: dict[str, tuple[int, int]] | None,
) -> None:
    in_plan = {name: entry for tables in modules.values() for name, entry in tables.items()}
    unknown = sorted(set(in_plan) - set(table_names))
    missing = sorted(set(table_names) - set(in_plan))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"tables not in the job config: {', '.join(unknown)}")
        if missing:
            parts.append(f"job tables missing from the plan: {', '.join(missing)}")
        raise PlanError(f"{path}: the plan does not match the job's tables: {'; '.join(parts)}")
    for name, (rows, dim) in (expected_shapes or {}).items():
        entry = in_plan[name]
        saved = (entry.get("num_embeddings"), entry.get("embedding_dim"))
        if saved != (None, None) and saved != (rows, dim):
            raise PlanError(
                f"{path}: table {name} is {saved[0]} x {saved[1]} in the plan but "
                f"{rows} x {dim} in the job config; re-plan with `dmmp-rec plan`"
            )


def _shape(world_size: int, local_world_size: int) -> str:
    hosts = world_size // local_world_size if local_world_size else "?"
    return f"{world_size} ranks as {hosts} host(s) x {local_world_size}"


def _read_json(path: Path) -> Any:
    """The JSON of a plan file; PlanError naming the file when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{path}: plan file not found") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON: {e}") from None


def saved_plan_meta(path: str | Path) -> dict[str, Any]:
    """The `meta` of a saved plan; PlanError naming the file when it cannot be read.

    Args:
        path (str | Path): a plan JSON file.

    Returns:
        dict[str, Any]: its meta; {} when it has none.
    """
    path = Path(path)
    data = _read_json(path)
    meta = data.get("meta") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else {}


def _check_job(
    path: Path,
    data: object,
    expected_world_size: int,
    expected_local_world_size: int | None,
    expected_device: str | None,
) -> None:
    """The file is a plan of this format, made for the job's world size, hosts and device."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanError(f"{path}: not a dmmp-rec sharding plan (format is not {FORMAT!r})")
    if data.get("version") != VERSION:
        raise PlanError(f"{path}: plan format version {data.get('version')!r}, expected {VERSION}")
    meta = data.get("meta", {})
    if meta.get("world_size") != expected_world_size:
        raise PlanError(
            f"{path}: the plan was made for world size {meta.get('world_size')} but the job has "
            f"{expected_world_size} ranks; re-plan with "
            f"`dmmp-rec plan --world-size {expected_world_size}`"
        )
    saved_local = meta.get("local_world_size")
    if (
        expected_local_world_size is not None
        and saved_local is not None
        and saved_local != expected_local_world_size
    ):
        raise PlanError(
            f"{path}: the plan was made for {_shape(meta['world_size'], saved_local)} but the "
            f"job runs {_shape(expected_world_size, expected_local_world_size)}; its shards "
            "name GPUs by their index on a host, so re-plan with `dmmp-rec plan --world-size "
            f"{expected_world_size} --local-world-size {expected_local_world_size}`"
        )
    if expected_device is not None and meta.get("device") not in (None, expected_device):
        raise PlanError(
            f"{path}: the plan was made for device {meta.get('device')} but the job runs on "
            f"{expected_device}"
        )


def load_plan(
    path: str | Path,
    expected_world_size: int,
    table_names: list[str],
    expected_shapes: dict[str, tuple[int, int]] | None = None,
    expected_device: str | None = None,
    expected_local_world_size: int | None = None,
) -> ShardingPlan:
    """Read a plan saved by `save_plan`, checked against the job before any training.

    Raises PlanError naming the file when it was made for another world size, ranks per host or
    device, names tables the job lacks, misses tables the job has, or was made for tables of
    another size.

    Args:
        path (str | Path): the plan JSON file.
        expected_world_size (int): the job's number of ranks; must equal the plan's.
        table_names (list[str]): the job's tables; the plan must have exactly these.
        expected_shapes (dict[str, tuple[int, int]] | None): table -> (rows, dim) of the job;
            None skips the size check.
        expected_device (str | None): the job's device, "cpu" or "cuda"; None skips the check.
        expected_local_world_size (int | None): the job's ranks per host (a 2 x 8 plan places
            shards on cuda:0..7 of each host); None skips the check.

    Returns:
        ShardingPlan: the plan, with the exact ParameterSharding objects that were saved.
    """
    path = Path(path)
    data = _read_json(path)
    _check_job(path, data, expected_world_size, expected_local_world_size, expected_device)
    modules = data.get("modules")
    if not isinstance(modules, dict):
        raise PlanError(f"{path}: missing 'modules'")
    _check_tables(path, modules, table_names, expected_shapes)
    plan = {}
    for module_path, tables in modules.items():
        module_plan = EmbeddingModuleShardingPlan()
        for name, raw in tables.items():
            where = f"{path}: modules.{module_path}.{name}"
            module_plan[name] = _sharding_from_json(raw, where, expected_world_size)
        plan[module_path] = module_plan
    return ShardingPlan(plan)  # type: ignore[arg-type]
