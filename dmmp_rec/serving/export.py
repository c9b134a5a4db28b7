"""Export a trained run for serving: user side, item vectors, FAISS indexes and a manifest.

One process: the checkpoint is loaded into a world-size-1 DistributedModelParallel (DCP
reshards it from any training world size), the sharded tables are reassembled whole, and:

- user_side.pt2: the user side (tables, user tower, gate, tau) as a torch.export archive that
  plain PyTorch loads and runs (`dmmp_rec.serving.user_side`);
- item_vectors.npy / item_ids.npy: [i_c, i_v] for every catalogue row and the row's item id;
- exact.faiss (IndexFlatIP) and approx.faiss (HNSW, efSearch tuned to a recall target on real
  user queries that went through the exported file itself);
- manifest.json (`dmmp_rec.serving.manifest`).

With `quantize="int8"` the user side and the item encoder hold int8 row-wise tables
(`dmmp_rec.serving.quantize`), the item vectors come from the int8 item encoder, which is also
written as item_side.pt2, and the manifest records table bytes and the top-k overlap with fp32.

Before anything is written the exported user side is checked against the training model's own
`query_vector` on the same users; a difference above QUERY_TOLERANCE stops the export
(`dmmp_rec.serving.user_side_export`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import faiss
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torchrec

import dmmp_rec
from dmmp_rec.config import DmmpConfig
from dmmp_rec.data.catalogue import ITEMS_FILE
from dmmp_rec.distributed.env import init_distributed, shutdown
from dmmp_rec.distributed.runtime import checkpoint_dir, load_for_inference
from dmmp_rec.inference.catalogue_vectors import encode_items
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.model.sparse import EBC_PATH
from dmmp_rec.serving import index as faiss_index
from dmmp_rec.serving import quantize
from dmmp_rec.serving.managed_map import MANAGED_FILE
from dmmp_rec.serving.manifest import (
    FORMAT,
    MANIFEST_FILE,
    ApproxIndex,
    FileEntry,
    Manifest,
)
from dmmp_rec.serving.user_side_export import (
    UserSideExport,
    UserSideOptions,
    user_features,
    write_user_side,
)
from dmmp_rec.serving.weights import ExportError, embedding_tables

EBC_TABLES = f"{EBC_PATH}.embedding_bags."
FILES = {
    "user_side": "user_side.pt2",
    "item_vectors": "item_vectors.npy",
    "item_ids": "item_ids.npy",
    "exact": "exact.faiss",
    "approx": "approx.faiss",
}


@dataclass
class ExportOptions:
    """How `export_run` measures and writes: the query sample and recall target that tune the
    HNSW index, the encoding batch size, progress bars, and int8 quantization."""

    queries: int = 1000  # users whose queries measure the approximate index's recall
    recall_k: int = 100
    recall_target: float = 0.95
    batch_size: int = 4096
    progress: bool = True
    quantize: str = "none"  # "int8": int8 row-wise tables (dmmp_rec.serving.quantize)


def _catalogue(cfg: DmmpConfig) -> Path:
    path = Path(cfg.data.path) / ITEMS_FILE
    if not path.is_file():
        raise ExportError(
            f"{path}: no item catalogue (one row per item, item feature columns); "
            "export indexes every catalogue item"
        )
    return path


def _versions() -> dict[str, str]:
    return {
        "dmmp_rec": dmmp_rec.__version__,
        "torch": torch.__version__,
        "torchrec": getattr(torchrec, "__version__", "unknown"),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def for_one_cpu_process(cfg: DmmpConfig, log: Callable[[str], None] = print) -> DmmpConfig:
    """`cfg` without its training sharding plan: that plan is for the training job's ranks and
    GPUs (a 2 x 8 GPU plan would refuse a single CPU process), while export is one CPU process
    that DCP reshards any checkpoint to, so the default plan for that process serves.

    Args:
        cfg: the run's config.
        log: where the note that the plan is dropped goes.

    Returns:
        `cfg` itself when it names no plan, else a copy with `sharding.plan` None.
    """
    if cfg.sharding.plan is None:
        return cfg
    log(
        f"export: sharding for one CPU process (the run's plan {cfg.sharding.plan} is for training)"
    )
    out = replace(cfg, sharding=replace(cfg.sharding, plan=None))
    out.source = cfg.source
    return out


def _check_replaceable(out: Path) -> None:
    """Export replaces `out` whole: only an earlier export or an empty directory may be there."""
    if out.exists() and not (
        out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST_FILE).exists())
    ):
        raise ExportError(f"{out}: exists and is not an export directory; choose another --out")


def export_run(
    cfg: DmmpConfig,
    checkpoint: str | Path,
    out: str | Path,
    options: ExportOptions | None = None,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Write the serving artifacts of `checkpoint` to `out` (replaced if it exists). Joins a
    one-process group for the sharded checkpoint and leaves none behind that it created.

    Args:
        cfg: the run's config (features, model, data path of the item catalogue).
        checkpoint: a run directory (its best or newest checkpoint) or one step directory.
        out: the export directory; an earlier export or an empty directory is replaced.
        options: recall target, query sample, batch size, progress, quantization.
        log: where the progress lines go.

    Returns:
        The manifest written to `out`/manifest.json.

    Raises:
        ExportError: bad options, no item catalogue, or an exported user side that differs
            from the model by more than QUERY_TOLERANCE.
    """
    created = not dist.is_initialized()
    try:
        return _export(cfg, checkpoint, Path(out), options or ExportOptions(), log)
    finally:
        if created:
            shutdown()


def _check_options(opts: ExportOptions) -> None:
    if opts.queries < 1 or opts.recall_k < 1 or not 0 < opts.recall_target <= 1:
        raise ExportError(f"bad options {opts}: need queries, recall_k >= 1, target in (0, 1]")
    if opts.quantize not in quantize.MODES:
        raise ExportError(f"--quantize must be one of {quantize.MODES}, got {opts.quantize!r}")


def _write_items(
    cfg: DmmpConfig,
    model: DMMPModel,
    tmp: Path,
    opts: ExportOptions,
    int8: quantize.Int8Export | None,
) -> np.ndarray:
    """item_vectors.npy and item_ids.npy of every catalogue item; returns the vectors."""
    items = pq.read_table(_catalogue(cfg))
    vectors = encode_items(model, cfg.features, items, opts.batch_size, progress=opts.progress)
    if int8:
        vectors = int8.encode_items(items, cfg.features.group("item"), vectors, opts.batch_size)
    id_feature = cfg.features.group("item")[0].name
    np.save(tmp / FILES["item_vectors"], vectors, allow_pickle=False)
    np.save(tmp / FILES["item_ids"], items.column(id_feature).to_numpy().astype(np.int64))
    return vectors


def _write_indexes(
    vectors: np.ndarray,
    queries: np.ndarray,
    tmp: Path,
    opts: ExportOptions,
    log: Callable[[str], None],
) -> faiss_index.ApproxTuning:
    """exact.faiss and approx.faiss (HNSW, efSearch tuned on `queries`); returns the tuning."""
    log(f"export: {len(vectors)} item vectors of width {vectors.shape[1]}; building indexes")
    exact = faiss_index.exact_index(vectors)
    faiss.write_index(exact, str(tmp / FILES["exact"]))
    approx = faiss_index.hnsw_index(vectors)
    tuning = faiss_index.tune_ef_search(approx, exact, queries, opts.recall_k, opts.recall_target)
    faiss.write_index(approx, str(tmp / FILES["approx"]))
    log(
        f"export: HNSW efSearch {tuning.ef_search}: recall@{tuning.k} {tuning.recall:.4f} "
        f"on {tuning.queries} user queries (target {tuning.target})"
    )
    if not tuning.reached:
        log(f"export: WARNING the approximate index misses the recall target {tuning.target}")
    return tuning


def _approx_entry(tuning: faiss_index.ApproxTuning) -> ApproxIndex:
    return ApproxIndex(
        kind="hnsw",
        m=faiss_index.HNSW_M,
        ef_construction=faiss_index.HNSW_EF_CONSTRUCTION,
        ef_search=tuning.ef_search,
        recall=round(tuning.recall, 6),
        k=tuning.k,
        queries=tuning.queries,
        target=tuning.target,
        tried={str(ef): round(r, 6) for ef, r in tuning.tried.items()},
    )


def _manifest(
    cfg: DmmpConfig,
    model: DMMPModel,
    step_dir: Path,
    tmp: Path,
    user: UserSideExport,
    vectors: np.ndarray,
    tuning: faiss_index.ApproxTuning,
) -> Manifest:
    """The manifest of the files written to `tmp` (checksums taken now, last)."""
    files = {role: FileEntry.of(tmp, name) for role, name in FILES.items()}
    if user.has_managed:
        files["managed_ids"] = FileEntry.of(tmp, MANAGED_FILE)
    if user.int8:
        specs = cfg.features.group("item")
        files["item_side"] = FileEntry.of(tmp, user.int8.save_item_side(tmp, specs))
    manifest = Manifest(
        format=FORMAT,
        versions=_versions(),
        variant=cfg.model.variant,
        vector_dim=int(vectors.shape[1]),
        tower_dim=cfg.model.student.out_dim,
        tau=float(user.module.tau),
        num_items=int(len(vectors)),
        item_id_feature=cfg.features.group("item")[0].name,
        user_features=user_features(cfg),
        files=files,
        approx=_approx_entry(tuning),
        checkpoint=str(step_dir.resolve()),
        train_step=int(model.train_step),
        data_path=str(Path(cfg.data.path).resolve()),
        query_max_abs_diff=user.diff,
    )
    manifest.quantization = user.int8.report(user.queries) if user.int8 else None
    return manifest


def _export(
    cfg: DmmpConfig, checkpoint: str | Path, out: Path, opts: ExportOptions, log: Callable
) -> Manifest:
    t0 = time.perf_counter()
    _check_replaceable(out)
    env = init_distributed("cpu")
    if env.world_size != 1:
        raise ExportError(f"export runs as one process, not {env.world_size} ranks")
    _check_options(opts)
    step_dir = checkpoint_dir(checkpoint)  # a wrong --checkpoint is named first
    _catalogue(cfg)  # fail before the slow part
    log(f"export: loading {step_dir}")
    dmp = load_for_inference(for_one_cpu_process(cfg, log), env, step_dir)
    model = cast(DMMPModel, dmp.module)
    tables = embedding_tables(dmp.state_dict(), EBC_TABLES)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log("export: user side -> torch.export")
    user_options = UserSideOptions(opts.queries, opts.batch_size, opts.quantize == "int8")
    user = write_user_side(cfg, model, tables, tmp / FILES["user_side"], user_options, log)
    vectors = _write_items(cfg, model, tmp, opts, user.int8)
    tuning = _write_indexes(vectors, user.queries, tmp, opts, log)
    manifest = _manifest(cfg, model, step_dir, tmp, user, vectors, tuning)
    manifest.export_seconds = round(time.perf_counter() - t0, 2)
    manifest.write(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest
