"""Config validation: every bad case names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dmmp_rec.config import ConfigError, config_from_dict, load_config, to_dict

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"


def _raw() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_loads_and_round_trips() -> None:
    cfg = load_config(DEFAULT)
    assert cfg.features.names[0] == "user_id"
    assert [s.group for s in cfg.features.all].count("item") == 5
    again = config_from_dict(to_dict(cfg))
    assert to_dict(again) == to_dict(cfg)
    configs = cfg.features.embedding_bag_configs()
    assert [c.name for c in configs] == [f"t_{n}" for n in cfg.features.names]
    hist = cfg.features.by_name("user_hist_items")
    assert hist.multi_valued and hist.embedding_bag_config().pooling.name == "MEAN"


def test_unknown_key_names_file_path_and_allowed_keys(tmp_path: Path) -> None:
    raw = _raw()
    raw["model"]["teacher"]["experts"] = 3
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "model.teacher.experts" in msg
    assert "shared_experts" in msg and "num_levels" in msg  # the allowed keys


def test_unknown_top_level_and_feature_keys(tmp_path: Path) -> None:
    raw = _raw()
    raw["features"]["user"][1]["embedding_dim"] = 8
    with pytest.raises(ConfigError, match=r"features\.user\.1\.embedding_dim"):
        load_config(_write(tmp_path, raw))
    raw = _raw()
    raw["trainer"] = {}
    with pytest.raises(ConfigError, match="unknown key 'trainer'"):
        load_config(_write(tmp_path, raw))


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("features.user.0.dim=0", "features.user.0.dim", "dim must be > 0"),
        ("features.item.1.cardinality=-5", "features.item.1.cardinality", "cardinality"),
        ("features.context=[]", "features.context", "empty feature group"),
        ("features.item.0.name=user_city", "features.item.0.name", "two groups"),
        ("features.user.1.name=user_id", "features.user.1.name", "listed twice"),
        ("features.user.0.pooling=max", "features.user.0.pooling", "'sum' | 'mean'"),
        ("features.user.0.out_of_range=drop", "features.user.0.out_of_range", "'hash'"),
        ("train.max_steps=abc", "train.max_steps", "expected an integer"),
        ("train.max_steps=2.5", "train.max_steps", "expected an integer"),
        ("train.dense_lr=0", "train.dense_lr", "must be > 0"),
        ("data.batch_size=0", "data.batch_size", "must be > 0"),
        ("model.teacher.kind=dnn", "model.teacher.kind", "must be one of"),
        ("model.loss.click_credit=1.5", "model.loss.click_credit", "[0, 1]"),
        ("model.student.learn_tau=maybe", "model.student.learn_tau", "true or false"),
        ("synthetic.num_days=2", "synthetic.num_days", "must exceed"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, [override])
    assert err.value.path == key
    assert fragment in err.value.message
    assert str(DEFAULT) in str(err.value)


def test_overrides_are_typed_like_the_file() -> None:
    cfg = load_config(DEFAULT, ["train.max_steps=20", "data.path=/tmp/w", "seed=3"])
    assert cfg.train.max_steps == 20 and cfg.data.path == "/tmp/w" and cfg.seed == 3
    cfg = load_config(DEFAULT, ["model.teacher.expert_dims=[16, 8]", "features.user.0.dim=8"])
    assert cfg.model.teacher.expert_dims == [16, 8]
    assert cfg.features.user[0].dim == 8


def test_override_of_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, ["train.max_step=20"])
    assert err.value.path == "train.max_step" and "max_steps" in err.value.message
    with pytest.raises(ConfigError, match="no list element"):
        load_config(DEFAULT, ["features.user.99.dim=8"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(DEFAULT, ["train.max_steps"])


def test_missing_required_and_bad_files(tmp_path: Path) -> None:
    raw = _raw()
    del raw["features"]["item"]
    with pytest.raises(ConfigError, match=r"features\.item: required key is missing"):
        load_config(_write(tmp_path, raw))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
