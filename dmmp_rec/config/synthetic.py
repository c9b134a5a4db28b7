"""Parameters of the seeded synthetic world (see DESIGN.md, "Data")."""

from __future__ import annotations

from dataclasses import dataclass

from dmmp_rec.config.base import require


@dataclass
class SyntheticConfig:
    """Sizes of the synthetic world (`synthetic:`, read by `dmmp-rec synth`).

    Its behavioural parameters are fixed in code on purpose (named constants in
    dmmp_rec/data/synthetic/: world.py, entities.py and log.py), so no experiment can tune the
    world towards one model. Category, brand, bucket, age, gender and city counts come from the
    feature cardinalities.

    Args:
        num_users (int): users, > 0; default 20000.
        num_items (int): items, > 0; default 50000.
        num_impressions (int): impressions over all days, >= num_days; default 2000000.
        num_days (int): days, > val_days + test_days; default 10.
        val_days (int): last days before the test days kept for validation, >= 0; default 1.
        test_days (int): last days kept for the test, >= 1; default 1.
        chunk_rows (int): impressions generated and written per chunk, > 0; default 250000.
        oversubscribed_ids (bool): allow the user_id, item_id and user_hist_items tables to
            have fewer rows than the world has users / items (the hash fold or managed
            collisions must share rows; docs/data.md "Id spaces larger than the tables");
            default false.
        purchase_rho_sd (float): standard deviation of the users' Beta-distributed
            purchase-taste correlation around 0.6, in [0, 0.45); 0 gives every user 0.6 (the
            world before issue 19). Default 0.2 (why: docs/data.md).
    """

    num_users: int = 20_000
    num_items: int = 50_000
    num_impressions: int = 2_000_000
    num_days: int = 10
    val_days: int = 1
    test_days: int = 1
    chunk_rows: int = 250_000
    oversubscribed_ids: bool = False
    purchase_rho_sd: float = 0.2

    def validate(self, path: str) -> None:
        """Check the section's values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): the section's dotted key path, for the error messages.
        """
        for name in ("num_users", "num_items", "num_impressions", "num_days", "chunk_rows"):
            require(
                getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}"
            )
        # a Beta with mean 0.6 exists only for sd < sqrt(0.6 * 0.4) ~ 0.49
        require(
            0.0 <= self.purchase_rho_sd < 0.45,
            f"{path}.purchase_rho_sd",
            f"must be in [0, 0.45), got {self.purchase_rho_sd}",
        )
        require(
            self.val_days >= 0 and self.test_days >= 1,
            f"{path}.test_days",
            "need test_days >= 1 and val_days >= 0",
        )
        require(
            self.val_days + self.test_days < self.num_days,
            f"{path}.num_days",
            f"num_days ({self.num_days}) must exceed val_days + test_days "
            f"({self.val_days + self.test_days}) so training has days left",
        )
        require(
            self.num_impressions >= self.num_days,
            f"{path}.num_impressions",
            f"must be >= num_days ({self.num_days}) so every day has impressions",
        )
