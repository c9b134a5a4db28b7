"""The ground truth of the synthetic world: the true pCTR and pCVR of any user-item pair.

The response model (DESIGN.md, "Data") is

    click logit      = CLICK_AFFINITY * <u, v> + CLICK_ATTRACT * attract_i + hour_effect[h]
                       + CLICK_BIAS
    conversion logit = CONV_AFFINITY * <u2, v2> + CONV_QUALITY * quality_i + propensity_u
                       + CONV_BIAS                                   (given a click)

where u, v are the hidden interest vectors, u2, v2 the correlated "purchase" vectors. The
generator samples clicks and conversions from exactly these functions, and `GroundTruth` saves
every hidden parameter (and the coefficients themselves) in `ground_truth.npz`, so evaluation
can compute oracle top-K, bait share and expected conversions without trusting the code
constants of a later version.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np

from dmmp_rec.errors import MissingInputError

GROUND_TRUTH_FILE = "ground_truth.npz"

# Coefficients of the response model; fixed on their own merits, never tuned per model.
CLICK_AFFINITY = 3.0  # interest match moves the click logit by up to +-3: personalisation matters
CLICK_ATTRACT = 1.0  # a title one sd more attractive (sd 0.5) lifts CTR by ~65%
CLICK_BIAS = -5.4  # puts the realised CTR of the biased log near Ali-CCP's ~4%
HOUR_AMPLITUDE = 0.2  # users click a little more in the evening than at dawn
HOUR_PEAK = 21  # the hour of the highest click propensity
CONV_AFFINITY = 2.5  # purchase match matters a little less than click match
CONV_QUALITY = 1.0  # quality (sd 0.5 for ordinary items) drives conversion after a click
CONV_BIAS = -4.4  # puts the realised CVR given click near 2-3% (Ali-CCP: 1-5%)
EVAL_HOUR = 20  # the fixed ctx_hour of users.parquet and the default hour of GroundTruth


def hour_effect() -> np.ndarray:
    """Additive click-logit effect of each hour of the day (24 floats)."""
    hours = np.arange(24, dtype=np.float64)
    return (HOUR_AMPLITUDE * np.cos(2.0 * np.pi * (hours - HOUR_PEAK) / 24.0)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """A numerically safe logistic function, computed in float64 and returned as float32."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x)).astype(np.float32)


@dataclass
class GroundTruth:
    """Hidden parameters of users and items, and the response model's coefficients."""

    user_vec: np.ndarray  # [U, D] float32, click interest
    user_vec2: np.ndarray  # [U, D] float32, purchase interest (correlated with user_vec)
    propensity: np.ndarray  # [U] float32, buyer propensity (conversion-logit offset)
    purchase_rho: np.ndarray  # [U] float32, each user's correlation of user_vec2 with user_vec
    item_vec: np.ndarray  # [I, D] float32
    item_vec2: np.ndarray  # [I, D] float32
    attract: np.ndarray  # [I] float32, title attractiveness
    quality: np.ndarray  # [I] float32
    is_bait: np.ndarray  # [I] bool
    is_gem: np.ndarray  # [I] bool
    hour_effect: np.ndarray  # [24] float32
    coef: np.ndarray  # [6] float32: click_aff, click_attract, click_bias, conv_aff, conv_q, bias
    eval_hour: int = EVAL_HOUR

    @property
    def num_users(self) -> int:
        return int(self.user_vec.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_vec.shape[0])

    @staticmethod
    def default_coef() -> np.ndarray:
        return np.array(
            [CLICK_AFFINITY, CLICK_ATTRACT, CLICK_BIAS, CONV_AFFINITY, CONV_QUALITY, CONV_BIAS],
            dtype=np.float32,
        )

    def save(self, out: str | Path) -> Path:
        """Write an .npz with fixed zip timestamps, so the same world gives the same bytes."""
        path = Path(out) / GROUND_TRUTH_FILE
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for f in fields(self):
                info = zipfile.ZipInfo(f"{f.name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asarray(getattr(self, f.name)))
        return path

    @classmethod
    def load(cls, out: str | Path) -> GroundTruth:
        """Load `<out>/ground_truth.npz` written by `dmmp-rec synth`."""
        path = Path(out) / GROUND_TRUTH_FILE
        if not path.exists():
            raise MissingInputError(f"{path} not found; generate the world with dmmp-rec synth")
        with np.load(path) as z:
            missing = [f.name for f in fields(cls) if f.name not in z.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {', '.join(missing)}")
            kwargs = {f.name: z[f.name] for f in fields(cls)}
        kwargs["eval_hour"] = int(kwargs["eval_hour"])
        return cls(**kwargs)

    # ---- pairwise (vectorised over aligned arrays of user and item ids) ----

    def _check(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(user_ids, dtype=np.int64)
        i = np.asarray(item_ids, dtype=np.int64)
        if u.shape != i.shape:
            raise ValueError(f"user_ids {u.shape} and item_ids {i.shape} must have one shape")
        if u.size and (u.min() < 0 or u.max() >= self.num_users):
            raise ValueError(f"user id out of range [0, {self.num_users}): {u.min()}..{u.max()}")
        if i.size and (i.min() < 0 or i.max() >= self.num_items):
            raise ValueError(f"item id out of range [0, {self.num_items}): {i.min()}..{i.max()}")
        return u, i

    # ---- the response model: the one place its formula is written ----

    def _click_from(
        self, affinity: np.ndarray, attract: np.ndarray, hour: np.ndarray
    ) -> np.ndarray:
        """Click logit from the interest match <u, v>, the items' attractiveness and the hour's
        effect (arrays that broadcast: aligned pairs or a users x items block)."""
        c = self.coef
        return c[0] * affinity + c[1] * attract + hour + c[2]

    def _conv_from(
        self, affinity: np.ndarray, quality: np.ndarray, propensity: np.ndarray
    ) -> np.ndarray:
        """Conversion logit (given a click) from the purchase match <u2, v2>, the items' quality
        and the users' buyer propensity (arrays that broadcast, as in `_click_from`)."""
        c = self.coef
        return c[3] * affinity + c[4] * quality + propensity + c[5]

    def click_logit(
        self, user_ids: np.ndarray, item_ids: np.ndarray, hours: np.ndarray | int | None = None
    ) -> np.ndarray:
        u, i = self._check(user_ids, item_ids)
        h = self.eval_hour if hours is None else np.asarray(hours, dtype=np.int64)
        aff = np.einsum("nd,nd->n", self.user_vec[u], self.item_vec[i])
        return self._click_from(aff, self.attract[i], self.hour_effect[h])

    def conv_logit(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        u, i = self._check(user_ids, item_ids)
        aff = np.einsum("nd,nd->n", self.user_vec2[u], self.item_vec2[i])
        return self._conv_from(aff, self.quality[i], self.propensity[u])

    def pctr(
        self, user_ids: np.ndarray, item_ids: np.ndarray, hours: np.ndarray | int | None = None
    ) -> np.ndarray:
        """True click probability; `hours` defaults to `eval_hour` (users.parquet's ctx_hour)."""
        return sigmoid(self.click_logit(user_ids, item_ids, hours))

    def pcvr(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """True conversion probability given a click (independent of the hour)."""
        return sigmoid(self.conv_logit(user_ids, item_ids))

    def pctcvr(
        self, user_ids: np.ndarray, item_ids: np.ndarray, hours: np.ndarray | int | None = None
    ) -> np.ndarray:
        """True probability of click and conversion: pCTR * pCVR."""
        return self.pctr(user_ids, item_ids, hours) * self.pcvr(user_ids, item_ids)

    # ---- users against many items (oracle top-K, full-corpus metrics) ----

    def _logit_matrices(
        self, user_ids: np.ndarray, item_ids: np.ndarray | slice
    ) -> tuple[np.ndarray, np.ndarray]:
        """Click and conversion logits [len(users), len(items)] at `eval_hour`: the response
        model with the affinities as matrix products (one per block of users)."""
        u = np.asarray(user_ids, dtype=np.int64)
        click = self._click_from(
            self.user_vec[u] @ self.item_vec[item_ids].T,
            self.attract[item_ids],
            self.hour_effect[self.eval_hour],
        )
        conv = self._conv_from(
            self.user_vec2[u] @ self.item_vec2[item_ids].T,
            self.quality[item_ids],
            self.propensity[u, None],
        )
        return click, conv

    def score_matrix(
        self, user_ids: np.ndarray, item_ids: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """True pCTR and pCTCVR [len(users), len(items)] at `eval_hour` (float32); one matrix
        product per block of users is about 7x faster than one user at a time."""
        click, conv = self._logit_matrices(user_ids, item_ids)
        ctr = sigmoid(click)
        return ctr, ctr * sigmoid(conv)

    def score_all_items(
        self, user_id: int, kind: Literal["pctr", "pcvr", "pctcvr"] = "pctr"
    ) -> np.ndarray:
        """True scores of every item for one user at `eval_hour`, indexed by item id."""
        if not 0 <= user_id < self.num_users:
            raise ValueError(f"user id {user_id} out of range [0, {self.num_users})")
        if kind not in ("pctr", "pcvr", "pctcvr"):
            raise ValueError(f"kind must be 'pctr', 'pcvr' or 'pctcvr', got {kind!r}")
        click, conv = self._logit_matrices(np.array([user_id]), slice(None))
        ctr, cvr = sigmoid(click[0]), sigmoid(conv[0])
        return {"pctr": ctr, "pcvr": cvr, "pctcvr": ctr * cvr}[kind]

    def item_means(
        self, user_ids: np.ndarray, block: int = 256
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each item's true pCTR, pCVR and pCTCVR averaged over `user_ids` (blocked matmuls)."""
        ctr = np.zeros(self.num_items, np.float64)
        cvr = np.zeros(self.num_items, np.float64)
        ctcvr = np.zeros(self.num_items, np.float64)
        users = np.asarray(user_ids, dtype=np.int64)
        for s in range(0, len(users), block):
            click, conv = self._logit_matrices(users[s : s + block], slice(None))
            p, q = sigmoid(click), sigmoid(conv)
            ctr += p.sum(0)
            cvr += q.sum(0)
            ctcvr += (p * q).sum(0)
        n = max(len(users), 1)
        return ctr / n, cvr / n, ctcvr / n
