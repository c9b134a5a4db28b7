"""Impressions of the synthetic world: a biased logging policy, clicks and conversions.

Every random number of an impression comes from a counter-based generator keyed by the seed,
the impression's global row index and a stream number (SplitMix64, `id_policy.splitmix64`, the
hash that also folds ids). A row's values therefore depend only on (seed, row), never on how
rows are grouped into chunks: generating 50M rows in chunks of 250k gives the same rows as one
huge chunk, with memory bounded by the chunk size.

Logging policy (why the log is not uniform): RAND_SHARE of impressions show a uniformly random
item (flagged is_rand, for unbiased evaluation); the rest show an item drawn by popularity *
exp(attractiveness), from one of the user's interest clusters with probability
POLICY_INTEREST_SHARE, else from the whole catalogue. Users arrive by Zipf activity; the hour
follows a daily traffic curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmmp_rec.data.id_policy import splitmix64
from dmmp_rec.data.synthetic.entities import World, pick_clusters
from dmmp_rec.data.synthetic.world import sigmoid

RAND_SHARE = 0.05  # ~5% uniform-random impressions, the unbiased slice
POLICY_INTEREST_SHARE = 0.6  # the production system mostly serves the user's known interests
TRAFFIC_BASE = 0.35  # night-time traffic relative to the evening peak
TRAFFIC_PEAK = 20  # busiest hour of the day

_STREAMS = ("user", "rand", "mode", "cluster", "item", "hour", "click", "conversion")
_M64 = (1 << 64) - 1


def _seed_key(seed: int) -> np.uint64:
    z = (seed * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03) & _M64
    return splitmix64(np.array([z], np.uint64))[0]


def row_uniforms(seed: int, rows: np.ndarray, stream: str) -> np.ndarray:
    """Uniforms in [0, 1), one per global row index, for one named stream."""
    s = np.uint64(_STREAMS.index(stream))
    x = (rows.astype(np.uint64) * np.uint64(len(_STREAMS)) + s) ^ _seed_key(seed)
    z = splitmix64(splitmix64(x))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def traffic_cdf() -> np.ndarray:
    """Cumulative share of the day's impressions by hour (24 floats ending at 1)."""
    hours = np.arange(24, dtype=np.float64)
    w = TRAFFIC_BASE + (1 - TRAFFIC_BASE) * 0.5 * (
        1 + np.cos(2 * np.pi * (hours - TRAFFIC_PEAK) / 24)
    )
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return cdf


@dataclass
class Impressions:
    """One chunk of the log (aligned arrays), with the true probabilities for the statistics."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    hour: np.ndarray  # int64
    click: np.ndarray  # int8
    conversion: np.ndarray  # int8, 1 only where click is 1
    is_rand: np.ndarray  # bool
    pctr: np.ndarray  # float32, true click probability
    pcvr: np.ndarray  # float32, true conversion probability given a click

    def __len__(self) -> int:
        return len(self.user)


def log_rows(world: World, seed: int, start: int, stop: int) -> Impressions:
    """Impressions for global rows [start, stop); memory is O(stop - start)."""
    rows = np.arange(start, stop, dtype=np.uint64)
    users, sampler = world.users, world.sampler
    num_items = len(world.items.category)

    user_cum = np.cumsum(users.activity)
    user = np.searchsorted(user_cum, row_uniforms(seed, rows, "user") * user_cum[-1], "right")
    user = np.minimum(user, len(user_cum) - 1).astype(np.int64)

    item = sampler.global_items(row_uniforms(seed, rows, "item"))
    interest = row_uniforms(seed, rows, "mode") < POLICY_INTEREST_SHARE
    if interest.any():
        clusters = pick_clusters(
            users, user[interest], row_uniforms(seed, rows[interest], "cluster")
        )
        item[interest] = sampler.cluster_items(clusters, row_uniforms(seed, rows[interest], "item"))
    is_rand = row_uniforms(seed, rows, "rand") < RAND_SHARE
    item[is_rand] = np.minimum(
        (row_uniforms(seed, rows[is_rand], "item") * num_items).astype(np.int64), num_items - 1
    )

    hour = np.searchsorted(traffic_cdf(), row_uniforms(seed, rows, "hour"), "right")
    hour = np.minimum(hour, 23).astype(np.int64)
    pctr = sigmoid(world.truth.click_logit(user, item, hour))
    pcvr = world.truth.pcvr(user, item)
    click = row_uniforms(seed, rows, "click") < pctr
    conversion = click & (row_uniforms(seed, rows, "conversion") < pcvr)
    return Impressions(
        user=user,
        item=item.astype(np.int64),
        hour=hour,
        click=click.astype(np.int8),
        conversion=conversion.astype(np.int8),
        is_rand=is_rand,
        pctr=pctr,
        pcvr=pcvr,
    )
