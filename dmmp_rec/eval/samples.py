"""The seeded user samples the ground-truth metrics are computed on, disjoint across days.

Every choice made from numbers (defaults, training length, the serving knob's operating point)
is made on the validation day and the test day is read once (DESIGN.md, "Evaluation protocol").
A user seen in both days would let a choice made on validation lean on the very users the test
table reports, so the validation sample leaves out every user of the test sample. The test
sample is drawn first, from the test day's users alone, so it does not depend on whether (or
how) validation was evaluated.
"""

from __future__ import annotations

import numpy as np

TEST_SPLIT = "test"


def test_sample(test_users: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to `n` of the sorted unique `test_users`, seeded; sorted."""
    n = min(n, len(test_users))
    rng = np.random.default_rng(seed)
    return np.sort(test_users[rng.choice(len(test_users), n, replace=False)])


def validation_sample(
    val_users: np.ndarray, test_users: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """Up to `n` of `val_users` that are not in the test sample of the same `n` and seed."""
    excluded = test_sample(test_users, n, seed)
    pool = np.setdiff1d(val_users, excluded, assume_unique=False)
    n = min(n, len(pool))
    rng = np.random.default_rng([seed, 1])
    return np.sort(pool[rng.choice(len(pool), n, replace=False)])


def oracle_sample(
    split: str, split_users: np.ndarray, test_users: np.ndarray | None, n: int, seed: int
) -> np.ndarray:
    """The sample of `split`: the test sample for the test day, else the validation sample
    (which needs the test day's users to stay disjoint from the test sample)."""
    if split == TEST_SPLIT:
        return test_sample(split_users, n, seed)
    if test_users is None:
        raise ValueError(f"the {split} sample must avoid the test sample: pass the test users")
    return validation_sample(split_users, test_users, n, seed)
