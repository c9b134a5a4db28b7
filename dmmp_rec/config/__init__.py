"""Typed, validated configuration (YAML -> dataclasses).

- `root`: `DmmpConfig`, the whole job config, loaded with dotted overrides (`load_config`);
  its sections: `features` (the sparse-feature schema), `data` (Parquet and batching),
  `synthetic` (the synthetic world's sizes), `model` (variant, teacher, student, losses),
  `train` (optimisation, checkpoints, validation, device) and `sharding` (the plan).
- `base`: `build` maps a raw mapping onto a dataclass, rejecting unknown keys and bad values
  with a `ConfigError` that names the file and the dotted key; `to_dict` is its inverse.
- `presets`: named override lists (`TINY_WORLD`, the world the tests use).

Each section's class docstring lists its keys with their defaults and allowed values.
"""

from dmmp_rec.config.base import ConfigError, build, to_dict
from dmmp_rec.config.features import FeaturesConfig, FeatureSpec
from dmmp_rec.config.root import DmmpConfig, apply_overrides, config_from_dict, load_config

__all__ = [
    "ConfigError",
    "DmmpConfig",
    "FeatureSpec",
    "FeaturesConfig",
    "apply_overrides",
    "build",
    "config_from_dict",
    "load_config",
    "to_dict",
]
