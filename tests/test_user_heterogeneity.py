"""Users who differ in how much their purchases follow their clicks (synthetic.purchase_rho_sd):
the spread is as configured, the ground truth saves it, and the saved truth is the generator's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmmp_rec.config import ConfigError
from dmmp_rec.data.synthetic.entities import PURCHASE_RHO, Cardinalities, build_entities
from dmmp_rec.data.synthetic.generate import WORLD_FILE, generate_world
from dmmp_rec.data.synthetic.world import GroundTruth
from tests.test_synthetic import read_all, small_cfg


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("sd", [0.1, 0.2, 0.3])
def test_spread_is_as_configured(sd):
    world = build_entities(3, 6000, 500, Cardinalities(), purchase_rho_sd=sd)
    rho = world.truth.purchase_rho
    assert rho.shape == (6000,) and rho.min() > 0.0 and rho.max() < 1.0
    assert abs(rho.mean() - PURCHASE_RHO) < 4 * sd / np.sqrt(6000)
    assert abs(rho.std() - sd) < 0.1 * sd
    # each user's purchase vector follows the click vector by that user's own rho (plus the
    # noise every user has: a random unit vector in 16 dimensions is not orthogonal to u)
    cos = _cos(world.truth.user_vec, world.truth.user_vec2)
    assert np.corrcoef(rho, cos)[0, 1] > 0.3
    low, high = rho < np.quantile(rho, 0.2), rho > np.quantile(rho, 0.8)
    assert cos[high].mean() - cos[low].mean() > 0.7 * (rho[high].mean() - rho[low].mean())


def test_no_spread_is_the_old_world_and_only_purchase_tastes_change():
    flat = build_entities(5, 800, 400, Cardinalities(), purchase_rho_sd=0.0)
    spread = build_entities(5, 800, 400, Cardinalities(), purchase_rho_sd=0.2)
    assert np.all(flat.truth.purchase_rho == np.float32(PURCHASE_RHO))
    for name in ("user_vec", "propensity", "item_vec", "item_vec2", "attract", "quality"):
        np.testing.assert_array_equal(getattr(flat.truth, name), getattr(spread.truth, name))
    np.testing.assert_array_equal(flat.users.hist_items, spread.users.hist_items)
    assert not np.allclose(flat.truth.user_vec2, spread.truth.user_vec2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("hetero")
    cfg = small_cfg("synthetic.purchase_rho_sd=0.25")
    return out, cfg, generate_world(cfg, out, progress=False)


def test_saved_truth_is_the_generators(world):
    out, cfg, summary = world
    syn = cfg.synthetic
    from dmmp_rec.data.synthetic.features import cardinalities

    made = build_entities(cfg.seed, syn.num_users, syn.num_items, cardinalities(cfg), 0.25)
    saved = GroundTruth.load(out)
    np.testing.assert_array_equal(saved.purchase_rho, made.truth.purchase_rho)
    log = read_all(out)
    users = log.column("user_id").to_numpy()
    items = log.column("item_id").to_numpy()
    hours = log.column("ctx_hour").to_numpy()
    np.testing.assert_array_equal(
        saved.pctcvr(users, items, hours), made.truth.pctcvr(users, items, hours)
    )
    # the saved truth explains the logged conversions (given a click) on average
    clicked = log.column("click").to_numpy() == 1
    q = saved.pcvr(users[clicked], items[clicked])
    conv = log.column("conversion").to_numpy()[clicked]
    assert abs(q.mean() - conv.mean()) < 4 * np.sqrt(q.mean() / clicked.sum())
    recorded = json.loads((out / WORLD_FILE).read_text())
    assert recorded["sizes"]["purchase_rho_sd"] == 0.25
    assert abs(recorded["purchase_rho_realised"]["sd"] - 0.25) < 0.03
    assert recorded["purchase_rho_realised"]["mean"] == pytest.approx(
        float(saved.purchase_rho.mean())
    )


def test_spread_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match="synthetic.purchase_rho_sd"):
        small_cfg("synthetic.purchase_rho_sd=0.6")
