"""eval / export take the model's shape from the run they load, not from --config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from support import CONFIG

from dmmp_rec.commands.run_config import config_for_checkpoint, run_dir
from dmmp_rec.config import ConfigError, load_config, to_dict
from dmmp_rec.distributed.runtime import _missing_key


def _run(tmp_path: Path, *overrides: str) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000010").mkdir(parents=True)
    cfg = load_config(CONFIG, list(overrides))
    (run / "config.json").write_text(json.dumps(to_dict(cfg)))
    return run


def _args(checkpoint: Path, config: Path | None, *overrides: str) -> argparse.Namespace:
    return argparse.Namespace(
        checkpoint=str(checkpoint),
        config=None if config is None else str(config),
        overrides=list(overrides),
    )


def test_eval_takes_the_runs_model_and_says_where_it_differs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run = _run(tmp_path, "model.loss.weighting=fixed", "model.student.out_dim=16")
    step = run / "checkpoints" / "step-00000010"
    assert run_dir(step) == run
    cfg = config_for_checkpoint(_args(step, CONFIG, "data.path=/elsewhere"), "eval")
    assert cfg.model.loss.weighting == "fixed" and cfg.model.student.out_dim == 16
    assert str(cfg.data.path) == "/elsewhere"  # the rest comes from --config and overrides
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.loss.weighting (run: 'fixed', --config: 'anchored')" in err[0]


def test_same_model_is_silent_and_no_config_uses_the_run(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run = _run(tmp_path)
    cfg = config_for_checkpoint(_args(run, CONFIG), "eval")
    assert cfg.model == load_config(CONFIG).model
    assert capsys.readouterr().err == ""
    alone = config_for_checkpoint(_args(run, None, "train.max_steps=7"), "export")
    assert alone.train.max_steps == 7 and alone.model == cfg.model


def test_no_run_config_and_no_config_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json in the run directory; pass --config"):
        config_for_checkpoint(_args(tmp_path, None), "eval")


def test_dcp_missing_key_is_named() -> None:
    message = (
        "CheckpointException ranks:dict_keys([0])\nTraceback ...\nRuntimeError: Missing key in "
        "checkpoint state_dict: model.dense.weighting.log_vars."
    )
    assert _missing_key(message) == "model.dense.weighting.log_vars"
    assert _missing_key("some other failure") is None
