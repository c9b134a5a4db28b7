"""The config a command that loads a checkpoint should use: the run's own shape.

A checkpoint only loads into the model it was trained as, so `eval` and `export` take the
`features` and `model` sections from the `config.json` the trainer wrote into the run directory;
`--config` supplies the rest (where the data is, evaluation settings) and its overrides apply
last. Without a run config (a bare step directory copied elsewhere) `--config` is used as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dmmp_rec.config import ConfigError, DmmpConfig, config_from_dict, load_config, to_dict

RUN_CONFIG = "config.json"
SHAPE_SECTIONS = ("features", "model")  # what a checkpoint's tensors depend on


def run_dir(checkpoint: Path) -> Path:
    """The run directory of a run, checkpoints or step directory (where config.json is)."""
    for candidate in (checkpoint, checkpoint.parent, checkpoint.parent.parent):
        if (candidate / RUN_CONFIG).is_file():
            return candidate
    return checkpoint


def _run_config(checkpoint: Path) -> tuple[dict[str, Any] | None, Path]:
    path = run_dir(checkpoint) / RUN_CONFIG
    if not path.is_file():
        return None, path
    try:
        return json.loads(path.read_text()), path
    except json.JSONDecodeError as e:
        raise ConfigError("", f"not valid JSON ({e})", str(path)) from None


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else f"{path} (run: {a!r}, --config: {b!r})"


def config_for_checkpoint(args: argparse.Namespace, command: str) -> DmmpConfig:
    """--config with the run's model and features (see the module docstring)."""
    run, path = _run_config(Path(args.checkpoint))
    if not args.config:
        if run is None:
            raise ConfigError("", f"no {RUN_CONFIG} in the run directory; pass --config", str(path))
        return config_from_dict(run, args.overrides, source=str(path))
    if run is None:
        return load_config(args.config, args.overrides)
    merged = to_dict(load_config(args.config))
    for section in SHAPE_SECTIONS:
        differs = _first_difference(run.get(section), merged.get(section), section)
        if differs:
            print(
                f"dmmp-rec {command}: the model comes from {path}, which differs from "
                f"{args.config} at {differs}",
                file=sys.stderr,
            )
        if section in run:
            merged[section] = run[section]
    return config_from_dict(merged, args.overrides, source=str(args.config))
