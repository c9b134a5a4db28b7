"""The user side of an export: written as a torch.export archive, read back and checked
against the training model's own queries and gates on a sample of real users, at several
values of the serving knob beta, before the rest of the export is written."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dmmp_rec.config import DmmpConfig
from dmmp_rec.data.catalogue import USERS_FILE, user_side
from dmmp_rec.data.schema import split_files
from dmmp_rec.inference.catalogue_vectors import encode_users
from dmmp_rec.model.dmmp import DMMPModel
from dmmp_rec.serving import quantize
from dmmp_rec.serving.item_side import ItemSide
from dmmp_rec.serving.managed_map import MANAGED_FILE, ServingIdMap, save_managed
from dmmp_rec.serving.manifest import UserFeature
from dmmp_rec.serving.requests import UserRequests, parse_table
from dmmp_rec.serving.retrieve import run_user_side
from dmmp_rec.serving.user_file import load_user_side, save_user_side
from dmmp_rec.serving.user_side import UserSide
from dmmp_rec.serving.weights import ExportError

QUERY_TOLERANCE = 1e-4
CHECK_BETAS = (0.0, -2.0, 1.0, 4.0, -math.inf, math.inf)  # serving-knob values checked


@dataclass(frozen=True)
class UserSideOptions:
    """How the user side is written and checked.

    Args:
        queries: users sampled to check the file (and to tune the index on their queries).
        batch_size: users encoded at once.
        int8: write the int8 row-wise module instead of fp32 (dmmp_rec.serving.quantize).
    """

    queries: int
    batch_size: int
    int8: bool


def user_features(cfg: DmmpConfig) -> list[UserFeature]:
    """The user-side features a serving request carries, as the manifest records them.

    Args:
        cfg: the run's config (its user and context feature groups).

    Returns:
        One UserFeature per user-side feature, in the order the user side reads them.
    """
    return [UserFeature.of(s) for s in user_side(cfg.features)]


def sample_users(cfg: DmmpConfig, n: int, seed: int) -> pa.Table:
    """Up to `n` users' user-side columns, to check the exported user side and tune the
    approximate index on real queries: users.parquet rows when the world has one, else rows of
    the test split's first file (real data has no user catalogue).

    Args:
        cfg: the run's config (data path and user-side features).
        n: how many users at most.
        seed: seeds the choice of rows.

    Returns:
        The chosen rows' user-side columns, in file order.
    """
    names = [s.name for s in user_side(cfg.features)]
    path = Path(cfg.data.path) / USERS_FILE
    table = pq.read_table(path, columns=names) if path.exists() else None
    if table is None:
        table = pq.read_table(split_files(cfg.data.path, "test")[0], columns=names)
    rows = np.random.default_rng(seed).permutation(table.num_rows)[:n]
    return table.take(np.sort(rows))


def _check_user_side(
    exported: torch.nn.Module,
    model: DMMPModel,
    cfg: DmmpConfig,
    users: pa.Table,
    requests: UserRequests,
    int8: quantize.Int8Export | None,
    batch_size: int,
) -> float:
    """The largest |difference| between the exported user side's queries and gates and the
    model's own on `users`, over CHECK_BETAS; stops the export above QUERY_TOLERANCE."""
    diff = 0.0
    for beta in CHECK_BETAS:  # the knob is an input: check it where operators will turn it
        queries, gates = run_user_side(exported, requests, batch_size, beta)
        ref_q, ref_g = encode_users(model, cfg.features, users, batch_size, beta=beta)
        if int8:  # the archive must reproduce the int8 module, measured against fp32
            ref_q, ref_g = int8.reference(requests, ref_q, ref_g, batch_size, beta)
        diff = max(diff, float(max(np.abs(queries - ref_q).max(), np.abs(gates - ref_g).max())))
        if not diff <= QUERY_TOLERANCE:
            raise ExportError(
                f"exported user side differs from the model by {diff:.2e} at beta {beta}"
            )
    return diff


@dataclass
class UserSideExport:
    """The written user side: its module, the sample's queries, and what checking it found.

    Args:
        module: the fp32 user side (its tau goes into the manifest).
        int8: the int8 export (None in fp32).
        queries: the exported file's queries of the sampled users (to tune the index on).
        diff: max |exported - model| over the sample and CHECK_BETAS.
        has_managed: managed-id maps were written beside the file.
    """

    module: UserSide  # the fp32 user side (its tau goes into the manifest)
    int8: quantize.Int8Export | None
    queries: np.ndarray  # the exported file's queries of the sampled users (index tuning)
    diff: float  # max |exported - model| over the sample and CHECK_BETAS
    has_managed: bool  # managed-id maps written beside it


def write_user_side(
    cfg: DmmpConfig,
    model: DMMPModel,
    tables: dict[str, torch.Tensor],
    path: Path,
    options: UserSideOptions,
    log: Callable[[str], None] = print,
) -> UserSideExport:
    """Write the user side to `path` (and the managed-id maps beside it), read the file back
    and check it against the model on a sample of users, so that an export whose user side
    differs from the model stops before anything else is written.

    Args:
        cfg: the run's config (features, data path, seed of the user sample).
        model: the trained model, whole (one process).
        tables: the model's embedding tables, by name, whole.
        path: the user side's file (torch.export archive).
        options: the sample's size, the encoding batch size, int8 or not.
        log: where the progress lines go.

    Returns:
        The fp32 module, the int8 export (or None), the file's queries of the sampled users,
        the largest difference found and whether managed-id maps were written.

    Raises:
        ExportError: the file's queries or gates differ from the model's by more than
            QUERY_TOLERANCE at one of CHECK_BETAS.
    """
    features = user_features(cfg)
    module = UserSide(
        cfg.features.group("user"), cfg.features.group("context"), tables, model.student
    )
    int8 = None
    if options.int8:  # fp32 modules checked against the model, then quantized
        item_module = ItemSide(cfg.features.group("item"), tables, model.student)
        int8 = quantize.Int8Export(module, item_module, QUERY_TOLERANCE)
    served = int8.user if int8 else module
    save_user_side(served, [f.cardinality for f in features], path)
    exported = load_user_side(path)

    users = sample_users(cfg, options.queries, cfg.seed)
    requests = parse_table(users, features, "users")
    has_managed = save_managed(model.sparse.managed, features, path.parent)
    if has_managed:  # raw ids -> trained rows, read back from the file serving will load
        requests = ServingIdMap(features, path.parent / MANAGED_FILE).apply(requests)
    diff = _check_user_side(exported, model, cfg, users, requests, int8, options.batch_size)
    queries, _ = run_user_side(exported, requests, options.batch_size)
    what = "its int8 module (checked in fp32 against the model)" if int8 else "the model"
    log(
        f"export: user side matches {what} on {len(users)} users at beta "
        f"{', '.join(f'{b:g}' for b in CHECK_BETAS)} (max |diff| {diff:.1e})"
    )
    return UserSideExport(module, int8, queries, diff, has_managed)
