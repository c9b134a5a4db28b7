"""Typed, validated configuration (YAML -> dataclasses)."""

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
