"""The Ali-CCP converter on hand-made fixtures in the exact raw format (tests/fixtures/aliccp)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from dmmp_rec.cli import main
from dmmp_rec.commands import convert_aliccp as command
from dmmp_rec.config import ConfigError, DmmpConfig, config_from_dict, load_config
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.data.aliccp.convert import ConversionStats, MalformedRowError, convert_aliccp
from dmmp_rec.data.aliccp.fields import ALICCP_FIELDS, resolve_fields
from dmmp_rec.data.id_policy import fold_ids
from dmmp_rec.data.schema import split_files

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "aliccp.yaml"
FIX = ROOT / "tests" / "fixtures" / "aliccp"
SKELETON = FIX / "sample_skeleton_fixture.csv"
COMMON = FIX / "common_features_fixture.csv"
MASK = (1 << 64) - 1


def ref_fold(raw: int, cardinality: int) -> int:
    """The id mapping in plain Python integers, independent of the numpy implementation: an id
    in [0, cardinality) is its own row, any other goes to 1 + SplitMix64(id) % (cardinality - 1)."""
    if 0 <= raw < cardinality:
        return raw
    z = (raw + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    return 1 + z % (cardinality - 1)


def cfg(*overrides: str) -> DmmpConfig:
    return load_config(CONFIG, list(overrides))


def convert(tmp_path: Path, config: DmmpConfig | None = None, **kw) -> ConversionStats:
    kw.setdefault("progress", False)
    skeleton = kw.pop("skeleton", SKELETON)
    common = kw.pop("common", COMMON)
    return convert_aliccp(config or cfg(), skeleton, common, tmp_path / "out", **kw)


def read_rows(tmp_path: Path, split: str = "train") -> list[dict]:
    return pq.read_table(split_files(tmp_path / "out", split)).to_pylist()


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def test_the_converter_uses_the_one_id_mapping():
    """Raw ids outside a table go to rows 1..card-1 by SplitMix64; ids inside stay."""
    raw = np.array([0, 1, 1001, 7001, 4176355, 2**62 + 12345], dtype=np.int64)
    for card in (2, 4, 500_000):
        spec = FeatureSpec(name="f", cardinality=card, dim=4)
        got, _ = fold_ids(raw, spec)
        assert got.tolist() == [ref_fold(int(r), card) for r in raw]
        assert got.min() >= 0 and got.max() <= card - 1
        outside = (raw < 0) | (raw >= card)
        assert got[outside].min() >= 1
    spec = FeatureSpec(name="f", cardinality=4, dim=4)
    assert set(fold_ids(np.arange(4, 1000), spec)[0].tolist()) == {1, 2, 3}


def test_config_loads_with_all_23_fields():
    config = cfg()
    slots = resolve_fields(config.features)
    # KJT order: user, item, context, cross
    assert (slots[0].field, slots[-1].field) == ("101", "853")
    assert {s.field for s in slots} == set(ALICCP_FIELDS)
    multi = {s.field for s in slots if s.spec.multi_valued}
    assert multi == {"109_14", "110_14", "127_14", "150_14", "210", "853"}
    groups = {s.field: s.spec.group for s in slots}
    assert {f for f, g in groups.items() if g == "cross"} == {"508", "509", "702", "853"}
    assert groups["301"] == "context"
    assert config.data.path == "data/aliccp"


def test_combination_fields_belong_to_the_teacher_only():
    raw = yaml.safe_load(CONFIG.read_text())
    cross = raw["features"].pop("cross")
    raw["features"]["context"].append(cross[0])  # 508 where the student's user tower reads it
    raw["features"]["cross"] = cross[1:]
    with pytest.raises(ConfigError, match="features.context.1.name: field 508 .* belongs in"):
        resolve_fields(config_from_dict(raw).features)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["features"]["cross"].append(raw["features"].pop("context")[0])  # 301 is not a cross
    with pytest.raises(ConfigError, match="features.cross.4.name: features.cross holds"):
        resolve_fields(config_from_dict(raw).features)


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("features.user.0.name=user_id", "features.user.0.name", "f<field>_<label>"),
        ("features.user.0.name=f999_nope", "features.user.0.name", "known field"),
        ("features.user.1.name=f101_again", "features.user.1.name", "already read"),
        ("features.item.0.cardinality=1", "features.item.0.cardinality", "reserved"),
    ],
)
def test_bad_feature_mapping_names_the_key(override, key, words):
    with pytest.raises(ConfigError) as e:
        resolve_fields(cfg(override).features)
    assert e.value.path == key
    assert words in str(e.value)


def test_round_trip_ids_lists_and_labels(tmp_path):
    stats = convert(tmp_path)
    assert stats.skeleton_lines == 7
    assert stats.common_rows == 3
    assert stats.rows_written == 6
    assert stats.dropped_click0_purchase1 == 1
    assert stats.missing_common == 1
    assert stats.bad_rows_skipped == 0
    assert (stats.clicks, stats.conversions) == (3, 1)
    # raw ids outside their tables: 8 profile fields of U1 + U2's gender (common rows, once
    # each), and scenario 9001, 9002 in kept skeleton rows; the other raw ids fit their tables
    assert stats.ids_hashed == 9 + 2
    assert stats.conflicts["f101_user_id"] == 1 and stats.conflicts["f205_item_id"] == 1
    assert stats.missing_values["f205_item_id"] == 1

    rows = read_rows(tmp_path)
    assert len(rows) == 6
    r0 = rows[0]
    assert r0["f101_user_id"] == ref_fold(1001, 500_000)
    assert r0["f129_geo"] == ref_fold(2701, 8)
    assert r0["f109_14_hist_cats"] == [ref_fold(i, 20_000) for i in (3001, 3002, 3003)]
    assert r0["f127_14_hist_brands"] == [ref_fold(i, 300_000) for i in (5001, 5002)]
    assert r0["f205_item_id"] == ref_fold(7001, 2_000_000)
    assert r0["f210_item_intents"] == [ref_fold(i, 100_000) for i in (7301, 7302, 7303)]
    assert r0["f853_cross_intents"] == [ref_fold(i, 200_000) for i in (8301, 8302)]
    assert r0["f301_scenario"] == ref_fold(9001, 8)
    assert (r0["click"], r0["conversion"], r0["day"], r0["is_rand"]) == (0, 0, 0, False)

    # line 2 shares the user of line 1; its absent item fields are 0 / [0]
    assert rows[1]["f109_14_hist_cats"] == r0["f109_14_hist_cats"]
    assert rows[1]["f206_item_category"] == 0 and rows[1]["f210_item_intents"] == [0]
    assert (rows[1]["click"], rows[1]["conversion"]) == (1, 0)
    # line 3: a conversion; user U2 lacks most profile fields
    assert (rows[2]["click"], rows[2]["conversion"]) == (1, 1)
    assert rows[2]["f121_profile_cat"] == 0 and rows[2]["f110_14_hist_shops"] == [0]
    assert rows[2]["f109_14_hist_cats"] == [ref_fold(3004, 20_000)]
    # line 4 (click=0, purchase=1) is gone; line 5's md5 is unknown: no user features
    assert rows[3]["f205_item_id"] == ref_fold(7005, 2_000_000)
    assert rows[3]["f101_user_id"] == 0 and rows[3]["f150_14_hist_intents"] == [0]
    # line 6: 101 twice in common and 205 twice in the skeleton keep the last id
    assert rows[4]["f101_user_id"] == ref_fold(1004, 500_000)
    assert rows[4]["f205_item_id"] == ref_fold(7007, 2_000_000)
    # line 7: no sample features at all
    assert rows[5]["f205_item_id"] == 0 and rows[5]["f853_cross_intents"] == [0]
    assert rows[5]["f101_user_id"] == r0["f101_user_id"]


def test_parts_and_row_groups(tmp_path):
    stats = convert(tmp_path, rows_per_group=2, rows_per_part=3, split="val")
    files = split_files(tmp_path / "out", "val")
    assert [p.name for p in files] == ["part-00000.parquet", "part-00001.parquet"]
    assert stats.parts == files
    assert [pq.ParquetFile(p).metadata.num_rows for p in files] == [3, 3]
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in files] == [2, 2]


def test_existing_output_needs_overwrite(tmp_path):
    convert(tmp_path)
    with pytest.raises(FileExistsError, match="already holds 1 Parquet"):
        convert(tmp_path)
    assert convert(tmp_path, overwrite=True).rows_written == 6


def test_malformed_skeleton_line_stops_with_file_and_line(tmp_path):
    with pytest.raises(MalformedRowError) as e:
        convert(tmp_path, skeleton=FIX / "sample_skeleton_bad.csv")
    assert e.value.file.endswith("sample_skeleton_bad.csv") and e.value.line == 3
    assert "sample_skeleton_bad.csv:3: feature_num says 3 entries" in str(e.value)
    assert not list((tmp_path / "out" / "train").glob("*.parquet"))


@pytest.mark.parametrize(
    ("bad_line", "words"),
    [(5, "field 205: id b'abc' is not an integer"), (6, "click must be 0 or 1"), (7, "got 4")],
)
def test_each_kind_of_bad_line_is_named(tmp_path, bad_line, words):
    lines = (FIX / "sample_skeleton_bad.csv").read_bytes().splitlines(keepends=True)
    skeleton = write_lines(tmp_path / "s.csv", [lines[0], lines[1], lines[bad_line - 1]])
    with pytest.raises(MalformedRowError) as e:
        convert(tmp_path, skeleton=skeleton, rows_per_group=2)
    assert e.value.line == 3 and words in e.value.reason


def test_malformed_lines_skipped_and_counted(tmp_path):
    stats = convert(tmp_path, skeleton=FIX / "sample_skeleton_bad.csv", on_bad_row="skip")
    assert stats.skeleton_lines == 8
    assert stats.bad_rows_skipped == 4
    assert stats.rows_written == 4
    items = [r["f205_item_id"] for r in read_rows(tmp_path)]
    assert items == [ref_fold(i, 2_000_000) for i in (7010, 7011, 7013, 7017)]


def test_common_features_duplicates_and_bad_values(tmp_path):
    lines = (FIX / "common_features_bad.csv").read_bytes().splitlines(keepends=True)
    with pytest.raises(MalformedRowError) as e:
        convert(tmp_path, common=write_lines(tmp_path / "c.csv", lines[:3]))
    assert e.value.line == 3 and "duplicate md5" in e.value.reason and "line 1" in e.value.reason
    with pytest.raises(MalformedRowError, match=r"common_features_bad.csv:4: .*'1.0x'"):
        convert(tmp_path, common=FIX / "common_features_bad.csv")

    stats = convert(tmp_path, common=FIX / "common_features_bad.csv", on_bad_row="skip")
    assert stats.bad_common_rows_skipped == 2
    assert stats.common_rows == 3
    # the first row of a duplicated md5 wins
    assert read_rows(tmp_path)[0]["f101_user_id"] == ref_fold(1001, 500_000)


def test_out_of_range_error_keeps_raw_ids_or_stops(tmp_path):
    config = cfg("features.item.0.out_of_range=error", "features.item.0.cardinality=7006")
    lines = SKELETON.read_bytes().splitlines(keepends=True)
    stats = convert(tmp_path, config, skeleton=write_lines(tmp_path / "s.csv", lines[:5]))
    assert [r["f205_item_id"] for r in read_rows(tmp_path)] == [7001, 7002, 7003, 7005]
    assert stats.ids_hashed == 9 + 2  # common rows + scenario ids of skeleton lines 1-5
    with pytest.raises(MalformedRowError) as e:
        convert(tmp_path, config, overwrite=True)
    assert e.value.line == 6 and "id 7006 is outside [0, 7006)" in e.value.reason


def test_conversion_progress_is_the_console_printers(tmp_path, capsys):
    # off a terminal: one line a pass here (a real pass prints one a minute), in lines read
    # and the share of the file's bytes
    convert(tmp_path, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == [
        "common_features: 3 lines",
        "sample_skeleton: 7 lines",
    ]
    assert err[0].endswith("line/s, read 100.0% of file, md5_keys 3")
    assert err[1].endswith("line/s, read 100.0% of file, rows_written 6")


def test_command_converts_and_reports(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "out"
    argv = ["--skeleton", str(SKELETON), "--common", str(COMMON), "--out", str(out), "--quiet"]
    assert command.run(parser.parse_args([*argv, "--split", "test"])) == 0
    text = capsys.readouterr().out
    assert "rows written:                 6" in text
    assert "dropped click=0 purchase=1:   1" in text
    assert "missing md5 joins:            1" in text
    assert len(split_files(out, "test")) == 1
    bad = ["--skeleton", str(FIX / "sample_skeleton_bad.csv")] + argv[2:]
    assert main(["convert-aliccp", *bad]) == 2  # a DmmpError: one line on stderr, exit 2
    err = capsys.readouterr().err
    assert "sample_skeleton_bad.csv:3:" in err and "--on-bad-row skip" in err
