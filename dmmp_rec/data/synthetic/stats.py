"""Figures of a generated world for world.json: realised rates, split sizes, bait properties.

Bait properties are measured two ways: on the TRUE probabilities of each item averaged over a
uniform sample of users (at the eval hour), compared with the median item; and on the realised
log, pooled over all impressions of baits versus all other items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dmmp_rec.data.synthetic.entities import World
from dmmp_rec.data.synthetic.log import Impressions

TRUTH_SAMPLE_USERS = 1000  # users averaged over for per-item true rates (bounded cost)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


@dataclass
class SplitCounts:
    rows: int = 0
    clicks: int = 0
    conversions: int = 0
    files: int = 0
    days: list[int] = field(default_factory=list)


class LogStats:
    """Accumulates counts chunk by chunk; memory is O(users + items), never O(impressions)."""

    def __init__(self, num_users: int, num_items: int) -> None:
        self.splits: dict[str, SplitCounts] = {}
        self.item_rows = np.zeros(num_items, np.int64)
        self.item_clicks = np.zeros(num_items, np.int64)
        self.item_convs = np.zeros(num_items, np.int64)
        self.user_rows = np.zeros(num_users, np.int64)
        self.rand = np.zeros(3, np.int64)  # rows, clicks, conversions
        self.sum_pctr = 0.0
        self.sum_pctr_rand = 0.0

    def add(self, split: str, day: int, imp: Impressions) -> None:
        s = self.splits.setdefault(split, SplitCounts())
        s.rows += len(imp)
        s.clicks += int(imp.click.sum())
        s.conversions += int(imp.conversion.sum())
        s.files += 1
        if day not in s.days:
            s.days.append(day)
        n = len(self.item_rows)
        self.item_rows += np.bincount(imp.item, minlength=n)
        self.item_clicks += np.bincount(imp.item, weights=imp.click, minlength=n).astype(np.int64)
        self.item_convs += np.bincount(imp.item, weights=imp.conversion, minlength=n).astype(
            np.int64
        )
        self.user_rows += np.bincount(imp.user, minlength=len(self.user_rows))
        r = imp.is_rand
        self.rand += [int(r.sum()), int(imp.click[r].sum()), int(imp.conversion[r].sum())]
        self.sum_pctr += float(imp.pctr.sum(dtype=np.float64))
        self.sum_pctr_rand += float(imp.pctr[r].sum(dtype=np.float64))

    def summary(self, world: World, seed: int) -> dict:
        rows = int(self.item_rows.sum())
        clicks = int(self.item_clicks.sum())
        convs = int(self.item_convs.sum())
        truth = world.truth
        means = true_item_means(world, seed)
        return {
            "rows": rows,
            "clicks": clicks,
            "conversions": convs,
            "ctr": _ratio(clicks, rows),
            "cvr_given_click": _ratio(convs, clicks),
            "ctcvr": _ratio(convs, rows),
            "mean_true_pctr_logged": self.sum_pctr / rows if rows else None,
            "rand_share": _ratio(self.rand[0], rows),
            "rand_ctr": _ratio(self.rand[1], self.rand[0]),
            "rand_cvr_given_click": _ratio(self.rand[2], self.rand[1]),
            "mean_true_pctr_rand": _ratio(self.sum_pctr_rand, self.rand[0]),
            "users_with_impressions": int((self.user_rows > 0).sum()),
            "items_with_impressions": int((self.item_rows > 0).sum()),
            "bait_fraction": float(truth.is_bait.mean()),
            "gem_fraction": float(truth.is_gem.mean()),
            "bait_impression_share": _ratio(int(self.item_rows[truth.is_bait].sum()), rows),
            "truth_sample_users": min(TRUTH_SAMPLE_USERS, truth.num_users),
            "bait_true": true_item_contrast(means, truth.is_bait),
            "gem_true": true_item_contrast(means, truth.is_gem),
            "bait_realised": self._realised(truth.is_bait),
            "gem_realised": self._realised(truth.is_gem),
            "splits": {k: vars(v) | {"days": sorted(v.days)} for k, v in self.splits.items()},
        }

    def _realised(self, mask: np.ndarray) -> dict:
        """Pooled CTR and CVR given click of the masked items versus all other items."""

        def rates(m: np.ndarray) -> tuple[float | None, float | None]:
            r, c, v = self.item_rows[m].sum(), self.item_clicks[m].sum(), self.item_convs[m].sum()
            return _ratio(c, r), _ratio(v, c)

        ctr_in, cvr_in = rates(mask)
        ctr_out, cvr_out = rates(~mask)
        return {
            "ctr": ctr_in,
            "cvr_given_click": cvr_in,
            "others_ctr": ctr_out,
            "others_cvr_given_click": cvr_out,
            "ctr_ratio": _ratio(ctr_in or 0.0, ctr_out or 0.0),
            "cvr_ratio": _ratio(cvr_in or 0.0, cvr_out or 0.0),
        }


def true_item_means(world: World, seed: int) -> tuple[np.ndarray, ...]:
    """Each item's true pCTR, pCVR, pCTCVR averaged over a seeded uniform sample of users."""
    truth = world.truth
    rng = np.random.default_rng([seed, 0x57A7])
    n = min(TRUTH_SAMPLE_USERS, truth.num_users)
    users = np.sort(rng.choice(truth.num_users, n, replace=False))
    return truth.item_means(users)


def true_item_contrast(means: tuple[np.ndarray, ...], mask: np.ndarray) -> dict:
    """True per-item rates of the masked items versus the median item."""
    ctr, cvr, ctcvr = means
    med_ctr, med_cvr, med_ctcvr = (float(np.median(x)) for x in (ctr, cvr, ctcvr))
    if not mask.any():
        return {"count": 0}
    return {
        "count": int(mask.sum()),
        "median_item_ctr": med_ctr,
        "median_item_cvr": med_cvr,
        "median_item_ctcvr": med_ctcvr,
        "ctr_ratio_of_medians": float(np.median(ctr[mask]) / med_ctr),
        "cvr_ratio_of_medians": float(np.median(cvr[mask]) / med_cvr),
        "ctcvr_ratio_of_medians": float(np.median(ctcvr[mask]) / med_ctcvr),
        "share_ctr_at_least_2x_median": float((ctr[mask] >= 2 * med_ctr).mean()),
        "share_cvr_at_most_0.3x_median": float((cvr[mask] <= 0.3 * med_cvr).mean()),
    }
