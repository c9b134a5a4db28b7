"""Map nested YAML dicts onto typed dataclasses, with errors that name the file and the key.

Every config section is a frozen-ish dataclass whose fields carry type hints. `build` walks the
raw dict and the hints together, so an unknown key, a wrong type or an impossible value is caught
on load with the dotted path of the key (``model.teacher.num_levels``), never deep in training.
Sections add value checks in a ``validate(self, path)`` method that raises ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from dmmp_rec.errors import DmmpError

T = TypeVar("T")


class ConfigError(DmmpError, ValueError):
    """A config problem, located by file and dotted key path.

    Args:
        path (str): the dotted key path ("model.loss.weighting"); "" for the whole file.
        message (str): what is wrong, and what is allowed.
        source (str | None): the config file (or "<dict>"); None when not known.
    """

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        key = f"{path}: " if path else ""
        super().__init__(f"{where}{key}{message}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, located in file `source` (raised again by the loaders).

        Args:
            source (str): the config file's path.

        Returns:
            ConfigError: a new error with the same key path and message.
        """
        return ConfigError(self.path, self.message, source)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        k, v = get_args(tp)
        return f"mapping of {_type_name(k)} to {_type_name(v)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert one raw YAML value to the annotated type or raise a ConfigError at `path`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(path, f"must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {value!r}")
        item_tp = (get_args(tp) or (Any,))[0]
        items = [_convert(v, item_tp, _join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        k_tp, v_tp = get_args(tp)
        return {
            _convert(k, k_tp, _join(path, k)): _convert(v, v_tp, _join(path, k))
            for k, v in value.items()
        }
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported config type {tp!r}")  # pragma: no cover


def build(cls: type[T], raw: Any, path: str = "") -> T:
    """Build dataclass `cls` from a raw mapping; unknown keys and bad types raise ConfigError.

    Nested dataclasses are built recursively, and each built object's `validate(path)` runs.

    Args:
        cls (type[T]): the dataclass to build.
        raw (Any): the parsed YAML mapping (None is an empty one).
        path (str): the dotted key path of `raw` in the whole config ("" at the top).

    Returns:
        T: the validated instance.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a mapping for {cls.__name__}, got {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in raw if k not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ConfigError(
            _join(path, unknown[0]), f"unknown key {unknown[0]!r}; allowed here: {allowed}"
        )
    kwargs = {}
    for name, field in fields.items():
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(_join(path, name), "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(path)
    return obj


def to_dict(obj: Any) -> Any:
    """The inverse of `build`: plain dicts and lists, ready for YAML or JSON.

    Args:
        obj (Any): a config dataclass, or any value inside one.

    Returns:
        Any: dicts for dataclasses (their init fields only), lists for lists and tuples, other
        values as they are.
    """
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def require(condition: bool, path: str, message: str) -> None:
    """Raise ConfigError(path, message) unless `condition` holds; the idiom of `validate`.

    Args:
        condition (bool): what must hold.
        path (str): the dotted key the error names.
        message (str): what is wrong, in one line.
    """
    if not condition:
        raise ConfigError(path, message)
