"""The one id mapping: in-range ids kept, others folded by SplitMix64 into rows 1..card-1, or
stopped under the error policy."""

from __future__ import annotations

import numpy as np
import pytest

from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.id_policy import (
    OutOfRangeIdError,
    fold_ids,
    fold_out_of_range,
    hash_into,
    splitmix64,
)


def _spec(policy: str = "hash", cardinality: int = 100) -> FeatureSpec:
    return FeatureSpec(name="item_id", cardinality=cardinality, dim=4, out_of_range=policy)


def test_splitmix64_known_values() -> None:
    # The first two outputs of the reference splitmix64 generator seeded with 0 are
    # mix(1 * golden) and mix(2 * golden); ours is mix(x + golden), so x = 0 and x = golden.
    out = splitmix64(np.array([0, 0x9E3779B97F4A7C15 - (1 << 64)], dtype=np.int64))
    assert [hex(int(v)) for v in out] == ["0xe220a8397b1dcdaf", "0x6e789e6aa1b965f4"]


def test_in_range_ids_are_returned_untouched() -> None:
    ids = np.array([0, 5, 99], dtype=np.int64)
    folded, count = fold_ids(ids, _spec())
    assert count == 0
    assert folded is ids


def test_hash_folds_out_of_range_and_negative_ids_stably() -> None:
    ids = np.array([3, 100, -1, 12345678901, 99, -100], dtype=np.int64)
    folded, positions = fold_out_of_range(ids, _spec())
    assert positions.tolist() == [1, 2, 3, 5]
    assert folded[[0, 4]].tolist() == [3, 99]
    assert ((folded >= 1) & (folded < 100)).all()
    expected = (splitmix64(ids[[1, 2, 3, 5]]) % np.uint64(99)).astype(np.int64) + 1
    assert folded[[1, 2, 3, 5]].tolist() == expected.tolist()
    assert ids.tolist() == [3, 100, -1, 12345678901, 99, -100]  # input not modified
    again, count = fold_ids(ids, _spec())
    assert count == 4 and again.tolist() == folded.tolist()


def test_hash_spreads_over_rows_1_to_card_minus_1_never_row_0() -> None:
    folded = hash_into(np.arange(1000, 19000, dtype=np.int64), 10)
    counts = np.bincount(folded, minlength=10)
    assert counts[0] == 0  # row 0 is "missing" (Ali-CCP's absent field)
    assert counts[1:].min() > 1800 and counts[1:].max() < 2200
    assert hash_into(np.array([5, -5, 2**62]), 1).tolist() == [0, 0, 0]  # a one-row table


def test_fold_is_idempotent_so_raw_and_converted_ids_agree() -> None:
    raw = np.array([0, 7, 99, 100, 4176355, 2**62 + 12345, -3], dtype=np.int64)
    once, _ = fold_ids(raw, _spec())
    twice, count = fold_ids(once, _spec())
    assert twice.tolist() == once.tolist() and count == 0


def test_splitmix64_takes_uint64_as_is_and_signed_ids_as_twos_complement() -> None:
    signed = np.array([0, 5, -1, -(2**63)], dtype=np.int64)
    unsigned = np.array([0, 5, 2**64 - 1, 2**63], dtype=np.uint64)
    assert splitmix64(signed).tolist() == splitmix64(unsigned).tolist()
    assert splitmix64(np.array([5], dtype=np.int32)).tolist() == splitmix64(signed[1:2]).tolist()


def test_fold_keeps_shape() -> None:
    ids = np.array([[1, 200], [-5, 7]], dtype=np.int64)
    folded, count = fold_ids(ids, _spec())
    assert folded.shape == (2, 2) and count == 2
    assert folded[0, 0] == 1 and folded[1, 1] == 7


def test_error_policy_names_feature_position_and_value() -> None:
    ids = np.array([1, 2, -7, 300], dtype=np.int64)
    with pytest.raises(OutOfRangeIdError, match=r"request 3: feature 'item_id': id -7") as e:
        fold_ids(ids, _spec("error"), where="request 3")
    assert e.value.index == 2 and e.value.value == -7 and e.value.feature == "item_id"
