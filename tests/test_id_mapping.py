"""One id mapping from conversion to serving: a raw Ali-CCP id sent to `retrieve` lands in the
table row that the converter (and so training) gave it.

The fixture is converted; the same users' raw ids, read from the raw files here by a plain
parser of this test's own, go through `retrieve`'s input path (a JSON-lines request file parsed
by `dmmp_rec.serving.requests` with the export manifest's user features) and must give exactly
the converted rows. Once with the fixture's ids as they are (user ids and histories fit their
tables, the profile fields do not), once with every raw id moved far outside every table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dmmp_rec.config import load_config
from dmmp_rec.data.aliccp.convert import convert_aliccp
from dmmp_rec.data.catalogue import user_side
from dmmp_rec.data.schema import split_files
from dmmp_rec.serving.manifest import UserFeature
from dmmp_rec.serving.requests import read_requests

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "aliccp"
SKELETON, COMMON = FIX / "sample_skeleton_fixture.csv", FIX / "common_features_fixture.csv"
FAR = 10**15  # beyond every table of configs/aliccp.yaml


def _entries(feature_list: bytes) -> list[tuple[str, int]]:
    """(field, raw id) of each `field\\x02id\\x03value` entry."""
    out = []
    for entry in feature_list.split(b"\x01") if feature_list else []:
        field, rest = entry.split(b"\x02")
        out.append((field.decode(), int(rest.split(b"\x03")[0])))
    return out


def _with_ids_moved(path: Path, out: Path, fixed_columns: int, shift: int) -> Path:
    """A copy of a raw file with `shift` added to every id (the leading columns kept)."""
    lines = []
    for line in path.read_bytes().splitlines():
        *head, feature_list = line.split(b",", fixed_columns)
        moved = [f"{f}\x02{raw + shift}\x031.0".encode() for f, raw in _entries(feature_list)]
        lines.append(b",".join([*head, b"\x01".join(moved)]) + b"\n")
    out.write_bytes(b"".join(lines))
    return out


def _raw_users(skeleton: Path, common: Path) -> list[dict[str, list[int]]]:
    """Per skeleton row the converter keeps: field -> raw ids (its own and its user's)."""
    users = {}
    for line in common.read_bytes().splitlines():
        md5, _, feature_list = line.split(b",", 2)
        users[md5] = _entries(feature_list)
    rows = []
    for line in skeleton.read_bytes().splitlines():
        _, click, purchase, md5, _, feature_list = line.split(b",", 5)
        if (click, purchase) == (b"0", b"1"):
            continue  # dropped by the converter, as the reference preprocessing does
        fields: dict[str, list[int]] = {}
        for field, raw in users.get(md5, []) + _entries(feature_list):
            fields.setdefault(field, []).append(raw)
        rows.append(fields)
    return rows


def _field(feature: str) -> str:
    """f109_14_hist_cats -> 109_14, f101_user_id -> 101 (the converter's naming rule)."""
    parts = feature[1:].split("_")
    return f"{parts[0]}_{parts[1]}" if parts[1].isdigit() else parts[0]


def _request(fields: dict[str, list[int]], features: list[UserFeature]) -> dict:
    """What a client sends: raw ids; an absent field is 0 ("missing"), a repeated single-valued
    field its last id (the conversion rules written in configs/aliccp.yaml)."""
    request: dict[str, int | list[int]] = {}
    for f in features:
        raw = fields.get(_field(f.name), [])
        request[f.name] = (raw or [0]) if f.multi_valued else (raw[-1] if raw else 0)
    return request


@pytest.mark.parametrize("shift", [0, FAR])
def test_raw_ids_reach_the_converted_rows_through_retrieve_input(tmp_path, shift) -> None:
    cfg = load_config(ROOT / "configs" / "aliccp.yaml")
    skeleton = _with_ids_moved(SKELETON, tmp_path / "skeleton.csv", 5, shift)
    common = _with_ids_moved(COMMON, tmp_path / "common.csv", 2, shift)
    convert_aliccp(cfg, skeleton, common, tmp_path / "out", progress=False)
    converted = pq.read_table(split_files(tmp_path / "out", "train")).to_pylist()

    features = [UserFeature.of(s) for s in user_side(cfg.features)]  # as the manifest has them
    sent = [_request(u, features) for u in _raw_users(skeleton, common)]
    assert len(sent) == len(converted) == 6
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sent))
    requests = read_requests(path, features)

    moved = 0
    for j, feature in enumerate(features):
        values, offsets = requests.values[j], requests.offsets[j]
        for b, row in enumerate(converted):
            got = values[offsets[b] : offsets[b + 1]].tolist()
            want = row[feature.name] if feature.multi_valued else [row[feature.name]]
            assert got == want, (feature.name, b)
            raw = sent[b][feature.name]
            moved += int(np.sum(np.array(raw if feature.multi_valued else [raw]) != want))
    folded = sum(int(v.sum()) for v in requests.folded.values())
    assert moved == folded > 0  # every id that changed row was folded by the one mapping
    if shift:  # nothing fits a table any more: every present id is hashed, none to row 0
        present = sum(int((v != 0).sum()) for v in requests.values)
        assert folded == present
    else:  # the fixture's user ids fit their table and stay; its profile fields are hashed
        assert requests.values[0][0] == 1001 and requests.folded["f121_profile_cat"].sum() > 0
