"""Map the configured features onto the synthetic world's observable columns.

The world knows a fixed set of features (KNOWN); the config decides which of them are written
and their id ranges. The feature cardinalities size the world's observables (number of
categories, brands, buckets...), and any mismatch is a ConfigError naming the feature's key.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dmmp_rec.config import ConfigError, DmmpConfig
from dmmp_rec.config.features import GROUPS, FeatureSpec
from dmmp_rec.data.schema import HOUR
from dmmp_rec.data.synthetic.cross import CROSSES
from dmmp_rec.data.synthetic.entities import Cardinalities, World

# name -> (multi_valued, Cardinalities field sizing it or None)
KNOWN: dict[str, tuple[bool, str | None]] = {
    "user_id": (False, None),
    "user_age": (False, "age"),
    "user_gender": (False, "gender"),
    "user_city": (False, "city"),
    "user_hist_items": (True, None),
    "user_hist_cats": (True, None),
    "item_id": (False, None),
    "item_category": (False, "category"),
    "item_brand": (False, "brand"),
    "item_price_bucket": (False, "price"),
    "item_title_bucket": (False, "title"),
    HOUR: (False, None),
    **{name: (False, None) for name in CROSSES},  # pair features: group `cross` only
}


def _paths(cfg: DmmpConfig) -> dict[str, tuple[str, FeatureSpec]]:
    out = {}
    for group in GROUPS:
        for i, spec in enumerate(cfg.features.group(group)):
            out[spec.name] = (f"features.{group}.{i}", spec)
    return out


def _check_group(
    name: str, path: str, spec: FeatureSpec, paths: dict[str, tuple[str, FeatureSpec]], source: str
) -> None:
    """Pair features in `cross` (read by the teacher only), and nothing else there."""
    if name in CROSSES and spec.group != "cross":
        raise ConfigError(
            f"{path}.name",
            f"{name} describes a (user, item) pair: it belongs in features.cross, which only "
            "the teacher reads (a retrieval tower sees one side)",
            source,
        )
    if spec.group == "cross" and name not in CROSSES:
        raise ConfigError(
            f"{path}.name",
            f"features.cross holds pair features only ({', '.join(CROSSES)}); {name} is not one",
            source,
        )
    if name in CROSSES:
        missing = [f for f in CROSSES[name][1] if f not in paths]
        if missing:
            raise ConfigError(
                f"{path}.name",
                f"{name} is computed from {', '.join(CROSSES[name][1])}; configure {missing}",
                source,
            )
        if spec.cardinality < 2:
            raise ConfigError(f"{path}.cardinality", "a cross feature needs >= 2 rows", source)


def cardinalities(cfg: DmmpConfig) -> Cardinalities:
    """The world's observable id ranges, checked against the configured features."""
    card = Cardinalities()
    paths = _paths(cfg)
    syn = cfg.synthetic
    minimum = {
        "user_id": (syn.num_users, "synthetic.num_users"),
        "item_id": (syn.num_items, "synthetic.num_items"),
        "user_hist_items": (syn.num_items, "synthetic.num_items"),
        HOUR: (24, "the 24 hours of a day"),
    }
    for name, (path, spec) in paths.items():
        if name not in KNOWN:
            raise ConfigError(
                f"{path}.name",
                f"the synthetic world has no feature {name!r}; it provides {', '.join(KNOWN)}",
                cfg.source,
            )
        _check_group(name, path, spec, paths, cfg.source)
        multi, field = KNOWN[name]
        if spec.multi_valued != multi:
            raise ConfigError(
                f"{path}.multi_valued", f"{name} must have multi_valued: {multi}", cfg.source
            )
        sized_by_ids = name in ("user_id", "item_id", "user_hist_items")
        if syn.oversubscribed_ids and sized_by_ids and spec.cardinality >= 2:
            pass  # ids may outnumber rows: folded or managed (docs/data.md)
        elif name in minimum and spec.cardinality < minimum[name][0]:
            need, why = minimum[name]
            raise ConfigError(
                f"{path}.cardinality",
                f"{spec.cardinality} is below {need} ({why})",
                cfg.source,
            )
        if field is not None:
            setattr(card, field, spec.cardinality)
    if "user_hist_cats" in paths:
        path, spec = paths["user_hist_cats"]
        if spec.cardinality < card.category:
            raise ConfigError(
                f"{path}.cardinality",
                f"{spec.cardinality} is below the number of categories ({card.category}, "
                "item_category's cardinality)",
                cfg.source,
            )
    return card


def _list_column(offsets: np.ndarray, values: np.ndarray, owners: np.ndarray) -> pa.Array:
    """Gather the CSR rows `owners` into a list<int64> Arrow array."""
    lens = offsets[owners + 1] - offsets[owners]
    out = np.zeros(len(owners) + 1, np.int64)
    np.cumsum(lens, out=out[1:])
    idx = np.repeat(offsets[owners] - out[:-1], lens) + np.arange(out[-1])
    return pa.ListArray.from_arrays(pa.array(out.astype(np.int32)), pa.array(values[idx]))


def feature_column(
    world: World, name: str, user: np.ndarray, item: np.ndarray, hour: np.ndarray
) -> pa.Array:
    """One feature's Arrow column for aligned (user, item, hour) rows."""
    u, it = world.users, world.items
    if name in CROSSES:
        if world.crosses is None:
            raise ValueError(f"{name}: the world was built without its cross features")
        return pa.array(world.crosses(user, item)[name])
    if name == "user_hist_items":
        return _list_column(u.hist_offsets, u.hist_items, user)
    if name == "user_hist_cats":
        return _list_column(u.cat_offsets, u.hist_cats, user)
    column = {
        "user_id": lambda: user,
        "user_age": lambda: u.age[user],
        "user_gender": lambda: u.gender[user],
        "user_city": lambda: u.city[user],
        "item_id": lambda: item,
        "item_category": lambda: it.category[item],
        "item_brand": lambda: it.brand[item],
        "item_price_bucket": lambda: it.price_bucket[item],
        "item_title_bucket": lambda: it.title_bucket[item],
        HOUR: lambda: hour,
    }[name]()
    return pa.array(np.asarray(column, dtype=np.int64))
