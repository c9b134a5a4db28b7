"""`dmmp-rec retrieve` on exported artifacts: top-K, scores and gates that agree with the trained
model, JSONL and Parquet input, out-of-range policies and bad input named by line and field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_export import exported  # noqa: F401  (the session fixture: a trained, exported run)

from dmmp_rec.cli import main
from dmmp_rec.config import ConfigError
from dmmp_rec.data.catalogue import USERS_FILE, item_side, user_side
from dmmp_rec.data.id_policy import hash_into
from dmmp_rec.data.kjt import table_kjt
from dmmp_rec.serving.requests import RequestError, parse_jsonl, read_requests
from dmmp_rec.serving.retrieve import Retriever

K = 5


@pytest.fixture(scope="module")
def retriever(exported) -> Retriever:  # noqa: F811
    return Retriever(exported.export)


def _records(exported, n: int = 6) -> list[dict]:  # noqa: F811
    return pq.read_table(Path(exported.cfg.data.path) / USERS_FILE).slice(0, n).to_pylist()


def _jsonl(path: Path, records: list[dict | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_top_k_and_scores_agree_with_the_trained_model(exported, retriever, tmp_path):  # noqa: F811
    records = _records(exported)
    path = _jsonl(tmp_path / "u.jsonl", records)
    results = retriever.search(read_requests(path, retriever.features), K)
    vectors = retriever.item_vectors
    users = pa.Table.from_pylist(records)
    model = exported.model
    users_of, items_of = user_side(exported.cfg.features), item_side(exported.cfg.features)
    with torch.no_grad():
        query = model.query_vector(table_kjt(users, users_of)).numpy()
        gate = model.user_gate(table_kjt(users, users_of)).numpy()
    assert [r.label for r in results] == [f"line {i}" for i in range(1, 7)]
    for b, r in enumerate(results):
        assert len(r.candidates) == K
        brute = np.argsort(-(vectors @ query[b]), kind="stable")[:K]
        assert [c.item for c in r.candidates] == brute.tolist()
        assert (r.gate_click, r.gate_conversion) == pytest.approx(tuple(gate[b]), abs=1e-5)
        # the student's own forward on (user, candidate) pairs gives the same three scores
        catalogue = pq.read_table(Path(exported.cfg.data.path) / "items.parquet")
        item_rows = catalogue.take([c.item for c in r.candidates])
        pairs = pa.Table.from_pylist([records[b]] * K)
        with torch.no_grad():
            user = model.sparse.lookup(table_kjt(pairs, users_of), ("user", "context"))
            item = model.sparse.lookup(table_kjt(item_rows, items_of), ("item",))
            out = model.student(user["user"], user["context"], item["item"])
        np.testing.assert_allclose([c.fused for c in r.candidates], out.fused, atol=1e-4)
        np.testing.assert_allclose([c.click for c in r.candidates], out.s_c, atol=1e-4)
        np.testing.assert_allclose([c.conversion for c in r.candidates], out.s_v, atol=1e-4)
        assert r.candidates[0].fused >= r.candidates[-1].fused


def test_conversion_shift_moves_the_ranking_to_the_conversion_tower(exported, retriever, tmp_path):  # noqa: F811, E501
    requests = read_requests(_jsonl(tmp_path / "u.jsonl", _records(exported)), retriever.features)
    as_trained = retriever.search(requests, K)
    leaning = retriever.search(requests, K, beta=2.0)
    conversion_only = retriever.search(requests, K, beta=float("inf"))
    vectors = retriever.item_vectors
    d = retriever.manifest.tower_dim
    for b, r in enumerate(conversion_only):
        assert r.gate_conversion == 1.0 and r.gate_click == 0.0
        scores = [c.conversion for c in r.candidates]  # ranked by s_v alone
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose([c.fused for c in r.candidates], scores, atol=1e-4)
        # the same u: the click and conversion scores of an item do not depend on beta
        best = r.candidates[0]
        plain = {c.item: c for c in as_trained[b].candidates}
        if best.item in plain:
            assert plain[best.item].conversion == pytest.approx(best.conversion, abs=1e-4)
        assert leaning[b].gate_conversion > as_trained[b].gate_conversion
    assert vectors.shape[1] == 2 * d
    assert any(
        [c.item for c in x.candidates] != [c.item for c in y.candidates]
        for x, y in zip(as_trained, conversion_only, strict=True)
    )
    with pytest.raises(ValueError, match="nan"):
        retriever.search(requests, K, beta=float("nan"))


def test_parquet_and_jsonl_give_the_same_answer(exported, retriever, tmp_path):  # noqa: F811
    records = _records(exported)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "u.parquet")
    a = retriever.search(read_requests(tmp_path / "u.parquet", retriever.features), K)
    path = _jsonl(tmp_path / "u.jsonl", records)
    b = retriever.search(read_requests(path, retriever.features), K)
    assert [r.label for r in a] == [f"row {i}" for i in range(6)]
    assert [r.candidates for r in a] == [r.candidates for r in b]


def test_approx_index_finds_most_of_the_exact_top_k(exported, retriever):  # noqa: F811
    approx = Retriever(exported.export, "approx")
    users = pq.read_table(Path(exported.cfg.data.path) / USERS_FILE)
    from dmmp_rec.serving.requests import parse_table

    requests = parse_table(users, retriever.features, "users")
    exact = retriever.search(requests, 50)
    near = approx.search(requests, 50)
    overlap = np.mean(
        [
            len({c.item for c in e.candidates} & {c.item for c in n.candidates}) / 50
            for e, n in zip(exact, near, strict=True)
        ]
    )
    assert overlap >= 0.9


def test_out_of_range_ids_follow_the_feature_policy(exported, retriever, tmp_path):  # noqa: F811
    record = _records(exported, 1)[0]
    big = dict(record, user_id=10**9, user_hist_items=[*record["user_hist_items"], -3])
    card = {f.name: f.cardinality for f in retriever.features}
    folded = dict(
        record,
        user_id=int(hash_into(np.array([10**9]), card["user_id"])[0]),
        user_hist_items=[
            *record["user_hist_items"],
            int(hash_into(np.array([-3]), card["user_hist_items"])[0]),
        ],
    )
    path = _jsonl(tmp_path / "u.jsonl", [big, folded])
    hashed, plain = retriever.search(read_requests(path, retriever.features), K)
    assert hashed.folded == {"user_id": 1, "user_hist_items": 1} and plain.folded == {}
    assert hashed.candidates == plain.candidates
    strict = [
        replace(f, out_of_range="error") if f.name == "user_id" else f for f in retriever.features
    ]
    path = _jsonl(tmp_path / "v.jsonl", [record, big])
    message = r"v\.jsonl: line 2: field 'user_id': .*1000000000 is outside \[0, 300\)"
    with pytest.raises(RequestError, match=message):
        parse_jsonl(path, strict)


BAD_JSONL = [
    ({"user_idd": 1}, "unknown feature", "user_idd"),
    ({"user_id": None}, "null", "user_id"),
    ({"user_id": "7"}, "expected one integer id, got str", "user_id"),
    ({"user_id": 7.0}, "expected one integer id, got float", "user_id"),
    ({"user_id": True}, "expected one integer id, got bool", "user_id"),
    ({"user_id": [7]}, "expected one integer id, got list", "user_id"),
    ({"user_age": [[1]]}, "expected one integer id, got list", "user_age"),
    ({"user_hist_items": [1, [2]]}, "expected a list of integers, found list", "user_hist_items"),
    ({"user_hist_items": [1, "2"]}, "expected a list of integers, found str", "user_hist_items"),
    ({"user_hist_cats": {"a": 1}}, "expected a list of integers, got dict", "user_hist_cats"),
]


@pytest.mark.parametrize(("change", "message", "field"), BAD_JSONL)
def test_bad_jsonl_names_line_and_field(exported, retriever, tmp_path, change, message, field):  # noqa: F811, E501
    good = _records(exported, 2)
    bad = dict(good[1], **change)
    if "user_idd" in change:
        del bad["user_id"]
    path = _jsonl(tmp_path / "u.jsonl", [good[0], "", bad])
    with pytest.raises(RequestError) as info:
        read_requests(path, retriever.features)
    assert (info.value.where, info.value.field) == ("line 3", field)
    assert str(info.value).startswith(f"{path}: line 3: field {field!r}: ")
    assert message in str(info.value)


def test_missing_feature_and_broken_lines(exported, retriever, tmp_path):  # noqa: F811
    good = _records(exported, 1)[0]
    missing = {k: v for k, v in good.items() if k != "ctx_hour"}
    cases = [
        (missing, "line 2: field 'ctx_hour': missing feature"),
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        (dict(good, user_id=2**70), "line 2: field 'user_id': id does not fit in int64"),
    ]
    for bad, message in cases:
        path = _jsonl(tmp_path / "u.jsonl", [good, bad])
        with pytest.raises(RequestError, match=message):
            read_requests(path, retriever.features)
    with pytest.raises(RequestError, match="no users"):
        read_requests(_jsonl(tmp_path / "e.jsonl", [""]), retriever.features)
    with pytest.raises(RequestError, match="no such file"):
        read_requests(tmp_path / "absent.jsonl", retriever.features)


def test_bad_parquet_names_column_and_row(exported, retriever, tmp_path):  # noqa: F811
    users = pa.Table.from_pylist(_records(exported, 3))
    i = users.column_names.index
    cases = [
        (users.drop_columns(["user_city"]), "field 'user_city': missing feature"),
        (users.append_column("price", pa.array([1, 2, 3])), "field 'price': unknown feature"),
        (
            users.set_column(i("user_age"), "user_age", pa.array([1.0, 2.0, 3.0])),
            "field 'user_age': expected integer ids, found double",
        ),
        (
            users.set_column(i("user_age"), "user_age", pa.array([[1], [2], [3]])),
            "field 'user_age': expected an integer column",
        ),
        (
            users.set_column(i("user_gender"), "user_gender", pa.array([1, None, 2])),
            "row 1: field 'user_gender': null value",
        ),
        (
            users.set_column(i("user_hist_cats"), "user_hist_cats", pa.array([[1], [], [2, None]])),
            "row 2: field 'user_hist_cats': null id in a list",
        ),
        (
            users.set_column(i("user_hist_cats"), "user_hist_cats", pa.array([1, 2, 3])),
            "field 'user_hist_cats': expected a list<int64> column",
        ),
    ]
    for table, message in cases:
        pq.write_table(table, tmp_path / "u.parquet")
        with pytest.raises(RequestError, match=message):
            read_requests(tmp_path / "u.parquet", retriever.features)


def test_retrieve_command(exported, tmp_path, capsys):  # noqa: F811
    path = _jsonl(tmp_path / "u.jsonl", _records(exported, 2))
    argv = ["retrieve", "--export", str(exported.export), "--users", str(path), "-k", "3"]
    assert main([*argv, "--format", "jsonl", "--out", str(tmp_path / "out.jsonl")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["user"] for x in lines] == ["line 1", "line 2"]
    keys = {"item", "fused", "click", "conversion"}
    assert all(len(x["items"]) == 3 and set(x["items"][0]) == keys for x in lines)
    assert sum(lines[0]["gate"].values()) == pytest.approx(1.0, abs=1e-6)
    assert lines == [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]

    assert main([*argv, "--index", "approx"]) == 0
    table = capsys.readouterr().out
    assert "line 1: gate click" in table and "% c" in table and "approx index" in table

    assert main([*argv, "--format", "jsonl", "--conversion-shift", "inf"]) == 0
    shifted = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["gate"]["conversion"] for x in shifted] == [1.0, 1.0]
    assert main([*argv, "--conversion-shift", "nan"]) == 2
    assert "--conversion-shift: must be a number" in capsys.readouterr().err

    first = _records(exported, 1)[0]
    _jsonl(path, [first, dict(first, user_id="x")])
    assert main(argv) == 2
    assert "line 2: field 'user_id': expected one integer id, got str" in capsys.readouterr().err


def test_demo_users_span_the_gate(exported, capsys):  # noqa: F811
    argv = ["retrieve", "--export", str(exported.export), "--demo-users", "3", "-k", "2"]
    assert main([*argv, "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(x["user"].startswith("user_id ") for x in lines)
    gates = [x["gate"]["conversion"] for x in lines]
    assert gates == sorted(gates) and gates[0] < gates[-1]


def test_retriever_refuses_a_damaged_export(exported, tmp_path):  # noqa: F811
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(exported.export, copy)
    with open(copy / "item_vectors.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ConfigError, match=r"files\.item_vectors: item_vectors\.npy: 100 bytes"):
        Retriever(copy)
    (copy / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="manifest.json: format: required key is missing"):
        Retriever(copy)
