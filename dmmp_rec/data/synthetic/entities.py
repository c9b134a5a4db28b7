"""Users and items of the synthetic world: hidden parameters and their noisy observable views.

Hidden: interest vectors from ~24 interest clusters, a correlated purchase vector (rho 0.6 on
average, each user's own rho spread by `synthetic.purchase_rho_sd`),
buyer propensity, item attractiveness and quality, bait / gem flags, Zipf activity and
popularity. Observable (what a model sees): user age, gender, city and a click history; item
category, brand, price bucket and title-attractiveness bucket. Each observable is tied to a
hidden quantity only loosely, so no feature gives the answer away.

The user history is a static snapshot drawn once per user from the user's interests (it does not
grow with the logged clicks), so it is the same in train, val, test and users.parquet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dmmp_rec.data.synthetic.world import GroundTruth, hour_effect

# Latent space and interests.
LATENT_DIM = 16  # enough room for 24 nearly-orthogonal cluster centres
NUM_CLUSTERS = 24  # interest clusters; each category belongs to one
MAX_USER_CLUSTERS = 3  # a user mixes 1-3 interests, like real multi-interest users
USER_NOISE = 0.35  # individual taste around the cluster mixture
ITEM_NOISE = 0.6  # items of one cluster differ, but stay closer to it than to others
PURCHASE_RHO = 0.6  # correlation of the purchase vectors with the click vectors (the mean
# over users; `synthetic.purchase_rho_sd` spreads each user's own value around it, docs/data.md)
CLUSTER_ZIPF = 0.6  # some interests are more common than others

# Items.
ATTRACT_SD = 0.5  # ordinary items' title attractiveness spread
BRAND_QUALITY_SD = 0.35  # brands differ in quality; brand is a noisy view of it
ITEM_QUALITY_SD = 0.35  # items of one brand differ too (total sd ~0.5)
BAIT_SHARE = 0.05  # ~5% click baits (DESIGN.md)
BAIT_ATTRACT = (1.3, 0.25)  # mean, sd: a bait's title draws ~3.5x the clicks ...
BAIT_QUALITY = (-2.0, 0.3)  # ... and their quality is poor, so they rarely convert
GEM_SHARE = 0.03  # a few hidden gems: dull titles, excellent quality
GEM_ATTRACT = (-1.0, 0.25)
GEM_QUALITY = (1.5, 0.3)
ITEM_POPULARITY_ZIPF = 0.9  # long-tail popularity, as in every catalogue
TITLE_NOISE_SD = 0.4  # the title bucket sees attractiveness through this much noise
PRICE_QUALITY_WEIGHT = 0.5  # price rises with quality only a little (corr ~0.45)

# Users.
USER_ACTIVITY_ZIPF = 0.8  # a few heavy users, a long tail of light ones
PROPENSITY_SD = 0.6  # individual buyer propensity (conversion-logit offset)
CITY_PROPENSITY_SD = 0.3  # cities differ in purchasing power; city is a weak view of it
CITY_ZIPF = 1.0  # big cities have many more users
UNKNOWN_GENDER_SHARE = 0.1  # gender id 0 = not given
AGE_PROPENSITY_WEIGHT = 0.5  # older users buy a little more
HIST_MAX = 20  # history length 1..20, longer for more active users
HIST_RANDOM_SHARE = 0.15  # part of a history is off-interest noise

# The logging policy's preference for attractive items (popularity * exp(this * attract)).
POLICY_ATTRACT = 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zipf weights over a random permutation of ranks (ids carry no popularity order)."""
    ranks = rng.permutation(n) + 1
    w = ranks.astype(np.float64) ** -exponent
    return w / w.sum()


def _rank_bucket(score: np.ndarray, buckets: int) -> np.ndarray:
    """Equal-frequency buckets of a score: 0 = lowest."""
    ranks = np.empty(len(score), np.int64)
    ranks[np.argsort(score, kind="stable")] = np.arange(len(score))
    return ranks * buckets // max(len(score), 1)


def _correlated(rng: np.random.Generator, base: np.ndarray, rho: float | np.ndarray) -> np.ndarray:
    """Unit vectors correlated with `base` by `rho` (a scalar, or one value per row)."""
    noise = _unit(rng.standard_normal(base.shape))
    r = np.asarray(rho, dtype=np.float64).reshape(-1, 1) if np.ndim(rho) else rho
    return _unit(r * base + np.sqrt(1.0 - r**2) * noise)


def user_purchase_rho(seed: int, n: int, sd: float) -> np.ndarray:
    """Each user's purchase-taste correlation: Beta-distributed with mean PURCHASE_RHO and
    standard deviation `sd` (0: every user has PURCHASE_RHO). Drawn from its own stream, so
    the rest of the world is the same whatever `sd` is."""
    if sd == 0.0:
        return np.full(n, PURCHASE_RHO, np.float32)
    m = PURCHASE_RHO
    total = m * (1.0 - m) / sd**2 - 1.0  # a + b of the Beta with this mean and sd
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 0xC0E]))
    return rng.beta(m * total, (1.0 - m) * total, n).astype(np.float32)


@dataclass
class Cardinalities:
    """Id ranges of the observable features (from the feature config)."""

    age: int = 8
    gender: int = 3
    city: int = 64
    category: int = 64
    brand: int = 2000
    price: int = 10
    title: int = 10


@dataclass
class ItemTable:
    """Items: observable features and the logging policy's sampling structure."""

    category: np.ndarray  # [I] int64
    brand: np.ndarray
    price_bucket: np.ndarray
    title_bucket: np.ndarray
    cluster: np.ndarray  # [I] int64, hidden
    popularity: np.ndarray  # [I] float64, hidden Zipf weights (sum 1)


@dataclass
class UserTable:
    """Users: observable features, history (CSR) and hidden interest mixture and activity."""

    age: np.ndarray  # [U] int64
    gender: np.ndarray
    city: np.ndarray
    hist_offsets: np.ndarray  # [U+1] int64
    hist_items: np.ndarray  # [sum len] int64, sorted and unique per user
    cat_offsets: np.ndarray
    hist_cats: np.ndarray
    clusters: np.ndarray  # [U, MAX_USER_CLUSTERS] int64, hidden
    cluster_cum: np.ndarray  # [U, MAX_USER_CLUSTERS] float64 cumulative mixture weights
    activity: np.ndarray  # [U] float64, hidden Zipf weights (sum 1)


class ItemSampler:
    """Draws items by popularity * exp(POLICY_ATTRACT * attract), globally or within a cluster,
    by inverse CDF from given uniforms (so the caller controls the randomness)."""

    def __init__(self, popularity: np.ndarray, attract: np.ndarray, cluster: np.ndarray, k: int):
        w = popularity * np.exp(POLICY_ATTRACT * attract.astype(np.float64))
        self.order = np.argsort(cluster, kind="stable")
        self.cum = np.cumsum(w[self.order])
        self.total = float(self.cum[-1])
        counts = np.bincount(cluster, minlength=k)
        self.end_idx = np.cumsum(counts)
        self.start_idx = self.end_idx - counts
        cum0 = np.concatenate([[0.0], self.cum])
        self.lo = cum0[self.start_idx]
        self.hi = cum0[self.end_idx]

    def global_items(self, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.cum, u * self.total, side="right")
        return self.order[np.minimum(idx, len(self.order) - 1)]

    def cluster_items(self, clusters: np.ndarray, u: np.ndarray) -> np.ndarray:
        lo, hi = self.lo[clusters], self.hi[clusters]
        idx = np.searchsorted(self.cum, lo + u * (hi - lo), side="right")
        empty = self.end_idx[clusters] == self.start_idx[clusters]
        idx = np.clip(idx, self.start_idx[clusters], np.maximum(self.end_idx[clusters] - 1, 0))
        items = self.order[idx]
        if empty.any():  # a cluster with no items (tiny worlds): fall back to the whole catalogue
            items[empty] = self.global_items(u[empty])
        return items


def pick_clusters(users: UserTable, user_ids: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One interest cluster per row, drawn from each user's mixture with uniforms `u`."""
    cum = users.cluster_cum[user_ids]
    slot = np.minimum((cum < u[:, None]).sum(1), MAX_USER_CLUSTERS - 1)
    return users.clusters[user_ids, slot]


def _items(
    rng: np.random.Generator, n: int, card: Cardinalities, k: int, centres: np.ndarray
) -> tuple[ItemTable, dict[str, np.ndarray]]:
    cat_w = _zipf_weights(rng, card.category, 0.5)
    category = rng.choice(card.category, size=n, p=cat_w)
    cluster = category % k
    vec = _unit(centres[cluster] + ITEM_NOISE * rng.standard_normal((n, LATENT_DIM)) / 4.0)
    vec2 = _correlated(rng, vec, PURCHASE_RHO)

    per_cat = max(1, card.brand // card.category)
    brand = (category * per_cat + rng.integers(0, per_cat, n)) % card.brand
    brand_quality = rng.normal(0.0, BRAND_QUALITY_SD, card.brand)
    quality = brand_quality[brand] + rng.normal(0.0, ITEM_QUALITY_SD, n)
    attract = rng.normal(0.0, ATTRACT_SD, n)

    kind = rng.random(n)
    is_bait = kind < BAIT_SHARE
    is_gem = (kind >= BAIT_SHARE) & (kind < BAIT_SHARE + GEM_SHARE)
    attract[is_bait] = rng.normal(*BAIT_ATTRACT, is_bait.sum())
    quality[is_bait] = rng.normal(*BAIT_QUALITY, is_bait.sum())
    attract[is_gem] = rng.normal(*GEM_ATTRACT, is_gem.sum())
    quality[is_gem] = rng.normal(*GEM_QUALITY, is_gem.sum())

    title = _rank_bucket(attract + rng.normal(0.0, TITLE_NOISE_SD, n), card.title)
    q_std = (quality - quality.mean()) / (quality.std() + 1e-9)
    price = _rank_bucket(PRICE_QUALITY_WEIGHT * q_std + rng.standard_normal(n), card.price)
    table = ItemTable(
        category=category.astype(np.int64),
        brand=brand.astype(np.int64),
        price_bucket=price,
        title_bucket=title,
        cluster=cluster.astype(np.int64),
        popularity=_zipf_weights(rng, n, ITEM_POPULARITY_ZIPF),
    )
    hidden = {
        "item_vec": vec,
        "item_vec2": vec2,
        "attract": attract.astype(np.float32),
        "quality": quality.astype(np.float32),
        "is_bait": is_bait,
        "is_gem": is_gem,
    }
    return table, hidden


def _csr_unique(owner: np.ndarray, values: np.ndarray, n_owners: int) -> tuple[np.ndarray, ...]:
    """Sorted, de-duplicated values per owner as (offsets, values)."""
    pairs = np.unique(np.stack([owner, values], 1), axis=0)
    offsets = np.zeros(n_owners + 1, np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_owners), out=offsets[1:])
    return offsets, pairs[:, 1].astype(np.int64)


@dataclass
class _Interests:
    """A user's hidden tastes: a mixture of 1-3 interest clusters and the latent vectors."""

    clusters: np.ndarray  # [U, MAX_USER_CLUSTERS] int
    n_used: np.ndarray  # [U] how many of the clusters the user mixes
    mix: np.ndarray  # [U, MAX_USER_CLUSTERS] mixture weights (zero beyond n_used)
    vec: np.ndarray  # [U, LATENT_DIM] click taste
    vec2: np.ndarray  # [U, LATENT_DIM] purchase taste, correlated with vec


def _interests(
    rng: np.random.Generator, n: int, k: int, centres: np.ndarray, purchase_rho: float | np.ndarray
) -> _Interests:
    cluster_w = _zipf_weights(rng, k, CLUSTER_ZIPF)
    m = MAX_USER_CLUSTERS
    clusters = np.stack([rng.choice(k, size=n, p=cluster_w) for _ in range(m)], 1)
    n_used = rng.integers(1, m + 1, n)
    mix = rng.dirichlet(np.ones(m), n) * (np.arange(m)[None, :] < n_used[:, None])
    mix /= mix.sum(1, keepdims=True)
    vec = _unit(
        np.einsum("nm,nmd->nd", mix, centres[clusters])
        + USER_NOISE * rng.standard_normal((n, LATENT_DIM)) / 4.0
    )
    vec2 = _correlated(rng, vec, purchase_rho)
    return _Interests(clusters, n_used, mix, vec, vec2)


def _demographics(
    rng: np.random.Generator, n: int, card: Cardinalities, k: int, tastes: _Interests
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(age, gender, city, propensity): observables loosely tied to the hidden propensity and
    the user's main interest."""
    city_w = _zipf_weights(rng, card.city, CITY_ZIPF)
    city = rng.choice(card.city, size=n, p=city_w)
    city_effect = rng.normal(0.0, CITY_PROPENSITY_SD, card.city)
    propensity = city_effect[city] + rng.normal(0.0, PROPENSITY_SD, n)

    primary = tastes.clusters[np.arange(n), tastes.mix.argmax(1)]
    gender_lean = rng.beta(2.0, 2.0, k)
    gender = np.where(rng.random(n) < gender_lean[primary], 1, 2)
    if card.gender >= 3:
        gender[rng.random(n) < UNKNOWN_GENDER_SHARE] = 0
    gender = gender % card.gender
    cluster_age = rng.normal(0.0, 0.7, k)
    age_score = cluster_age[primary] + AGE_PROPENSITY_WEIGHT * propensity + rng.standard_normal(n)
    age = _rank_bucket(age_score, card.age)
    return age, gender, city, propensity


def _draw_history(
    rng: np.random.Generator,
    table: UserTable,
    owner: np.ndarray,
    items: ItemTable,
    sampler: ItemSampler,
) -> None:
    """Fill `table`'s item and category histories: one item per entry of `owner` (the user of
    each history slot), mostly from the user's interests, some at random."""
    n, total = len(table.age), len(owner)
    picked = sampler.cluster_items(
        pick_clusters(table, owner, rng.random(total)), rng.random(total)
    )
    noise = rng.random(total) < HIST_RANDOM_SHARE
    picked[noise] = rng.integers(0, len(items.category), int(noise.sum()))
    table.hist_offsets, table.hist_items = _csr_unique(owner, picked, n)
    table.cat_offsets, table.hist_cats = _csr_unique(owner, items.category[picked], n)


def _users(
    rng: np.random.Generator,
    n: int,
    card: Cardinalities,
    k: int,
    centres: np.ndarray,
    items: ItemTable,
    sampler: ItemSampler,
    purchase_rho: float | np.ndarray,
) -> tuple[UserTable, dict[str, np.ndarray]]:
    tastes = _interests(rng, n, k, centres, purchase_rho)
    age, gender, city, propensity = _demographics(rng, n, card, k, tastes)
    activity = _zipf_weights(rng, n, USER_ACTIVITY_ZIPF)
    act_pct = _rank_bucket(activity, 100) / 99.0
    length = 1 + rng.binomial(HIST_MAX - 1, 0.15 + 0.6 * act_pct)
    m = MAX_USER_CLUSTERS
    cluster_cum = np.cumsum(tastes.mix, 1)
    cluster_cum[np.arange(m)[None, :] >= (tastes.n_used - 1)[:, None]] = 1.0  # no gap at 1
    table = UserTable(
        age=age,
        gender=gender.astype(np.int64),
        city=city.astype(np.int64),
        hist_offsets=np.zeros(1, np.int64),
        hist_items=np.zeros(0, np.int64),
        cat_offsets=np.zeros(1, np.int64),
        hist_cats=np.zeros(0, np.int64),
        clusters=tastes.clusters.astype(np.int64),
        cluster_cum=cluster_cum,
        activity=activity,
    )
    _draw_history(rng, table, np.repeat(np.arange(n), length), items, sampler)
    hidden = {
        "user_vec": tastes.vec,
        "user_vec2": tastes.vec2,
        "propensity": propensity.astype(np.float32),
    }
    return table, hidden


@dataclass
class World:
    """Everything the impression generator needs; `truth` is what ground_truth.npz stores;
    `crosses` computes the configured cross features from observables (synthetic.cross)."""

    users: UserTable
    items: ItemTable
    sampler: ItemSampler
    truth: GroundTruth
    card: Cardinalities
    crosses: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None


def build_entities(
    seed: int, num_users: int, num_items: int, card: Cardinalities, purchase_rho_sd: float = 0.0
) -> World:
    """Every user and item of the world, deterministic in `seed`; `purchase_rho_sd` spreads the
    users' purchase-taste correlation around PURCHASE_RHO."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    k = min(NUM_CLUSTERS, card.category)
    centres = _unit(rng.standard_normal((k, LATENT_DIM)))
    items, item_hidden = _items(rng, num_items, card, k, centres)
    sampler = ItemSampler(items.popularity, item_hidden["attract"], items.cluster, k)
    rho = user_purchase_rho(seed, num_users, purchase_rho_sd)
    # no spread: the scalar, so the world is bit for bit the one before users differed
    draw = rho if purchase_rho_sd > 0 else PURCHASE_RHO
    users, user_hidden = _users(rng, num_users, card, k, centres, items, sampler, draw)
    user_hidden["purchase_rho"] = rho
    truth = GroundTruth(  # the hidden arrays by field name
        **user_hidden,  # type: ignore[arg-type]
        **item_hidden,  # type: ignore[arg-type]
        hour_effect=hour_effect(),
        coef=GroundTruth.default_coef(),
    )
    return World(users, items, sampler, truth, card)
