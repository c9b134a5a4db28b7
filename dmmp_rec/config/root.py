"""The whole job config: features, data, synthetic world, model, training and sharding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from dmmp_rec.config.base import ConfigError, build, require
from dmmp_rec.config.data import DataConfig
from dmmp_rec.config.features import FeaturesConfig
from dmmp_rec.config.model import DISTILLING_VARIANTS, ModelConfig
from dmmp_rec.config.sharding import ShardingConfig
from dmmp_rec.config.synthetic import SyntheticConfig
from dmmp_rec.config.train import TrainConfig


@dataclass
class DmmpConfig:
    """The whole job config (configs/*.yaml), validated on load; `source` is the file it came from.

    Args:
        features (FeaturesConfig): the sparse-feature schema. Required.
        seed (int): seed of the synthetic world, and of training unless train.seed is set;
            >= 0, default 0.
        data (DataConfig): where the Parquet data lives and how it is batched.
        synthetic (SyntheticConfig): sizes of the synthetic world (`dmmp-rec synth`).
        model (ModelConfig): variant, teacher, student and losses.
        train (TrainConfig): optimisation, checkpointing, validation and devices.
        sharding (ShardingConfig): the sharding plan.
    """

    features: FeaturesConfig
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    source: str = field(default="<dict>", init=False, compare=False)

    def validate(self, path: str) -> None:
        """Check the top-level values on load (`build` calls it); ConfigError names the key.

        Args:
            path (str): "" (the top level), for the error messages.
        """
        require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")

    @property
    def cross_candidates(self) -> int:
        """How many in-batch candidate pairs per row carry cross features (the candidate keys
        of each batch): the listwise distillation's R when the model has it and cross features
        exist, else 0."""
        if not self.features.group("cross") or self.model.variant not in DISTILLING_VARIANTS:
            return 0
        return self.model.loss.distill_candidates

    @property
    def training_seed(self) -> int:
        """Seed of initialisation and row order: `train.seed`, else the world's `seed`."""
        return self.seed if self.train.seed is None else self.train.seed


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(text, "an override must look like key.path=value")
    key, value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(key, "malformed override key")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(key, f"cannot parse value {value!r}: {e}") from None
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys (`train.max_steps=20`, `features.user.0.dim=8`) in a raw config dict.

    A missing intermediate mapping is created so the unknown key is reported by `build`, with
    the list of allowed keys, exactly as it would be for the same key in the file. Values are
    parsed as YAML (`=20` is an int, `=null` None).

    Args:
        raw (dict[str, Any]): the parsed YAML mapping; modified in place.
        overrides (list[str]): "dotted.key=value" strings, applied in order; a malformed one
            raises ConfigError.

    Returns:
        dict[str, Any]: `raw`.
    """
    for text in overrides:
        parts, value = _parse_override(text)
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(where, f"no list element {part!r} (length {len(node)})")
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(where, f"cannot set a key inside a {type(node).__name__}")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(text.split("=")[0], f"no list element {last!r}")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(
                text.split("=")[0], f"cannot set a key inside a {type(node).__name__}"
            )
    return raw


class _Sourced(Protocol):
    source: str


S = TypeVar("S", bound=_Sourced)


def build_with_overrides(
    cls: type[S], raw: dict[str, Any], overrides: list[str] | None, source: str
) -> S:
    """`cls` built from `raw` after the dotted overrides, its errors and `source` naming the file.

    The job config and the plan config are both YAML sections read this way.

    Args:
        cls (type): the config dataclass (it has a `source` field).
        raw (dict[str, Any]): the parsed YAML mapping.
        overrides (list[str] | None): dotted `key=value` overrides applied first; None for none.
        source (str): where `raw` came from (a file path, or "<dict>").

    Returns:
        The validated config, its `source` set.
    """
    try:
        raw = apply_overrides(raw, list(overrides or []))
        cfg = build(cls, raw)
    except ConfigError as e:
        raise e.with_source(source) from None
    cfg.source = source
    return cfg


def read_yaml_mapping(path: Path, what: str, empty_is_mapping: bool = False) -> dict[str, Any]:
    """The top-level mapping of a YAML file; one ConfigError naming the file otherwise.

    Args:
        path (Path): the YAML file.
        what (str): what the file holds, for the messages ("config", "plan config").
        empty_is_mapping (bool): an empty file reads as {} (else it is refused as no mapping).

    Returns:
        dict[str, Any]: the parsed mapping.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("", f"{what} file not found", str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError("", f"invalid YAML: {e}", str(path)) from None
    if raw is None and empty_is_mapping:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("", f"the {what} must be a mapping at the top level", str(path))
    return raw


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, source: str = "<dict>"
) -> DmmpConfig:
    """Build and validate a config from a raw dict; errors name `source` and the key.

    Args:
        raw (dict[str, Any]): the parsed YAML mapping.
        overrides (list[str] | None): dotted `key=value` overrides applied first; None for none.
        source (str): where the dict came from (a file path), for errors and `DmmpConfig.source`.

    Returns:
        DmmpConfig: the validated config.
    """
    return build_with_overrides(DmmpConfig, raw, overrides, source)


def load_config(path: str | Path, overrides: list[str] | None = None) -> DmmpConfig:
    """Load a YAML config file, apply dotted overrides and validate everything.

    Args:
        path (str | Path): the YAML file; ConfigError naming it when missing, not YAML or not
            a mapping.
        overrides (list[str] | None): dotted `key=value` overrides (the CLI's trailing
            arguments); None for none.

    Returns:
        DmmpConfig: the validated config, its `source` the path.

    Example::

        cfg = load_config("configs/synthetic.yaml", ["train.max_steps=20", "data.batch_size=256"])
        cfg.train.max_steps, cfg.data.batch_size, cfg.features.group_dim("user")
    """
    path = Path(path)
    return config_from_dict(read_yaml_mapping(path, "config"), overrides, source=str(path))
