"""Typed settings: a config section read as a frozen dataclass, built once per config version
and handed to the code that uses it. The conversions (an integer from TOML or the environment
taken as a float, a list as a tuple, a nested table as its own dataclass) happen here and
nowhere else, so no module casts a raw config value at its place of use.

    @dataclass(frozen=True)
    class QueueSettings:
        workers: int
        poll_seconds: float

    settings = section(QueueSettings, "improve_queue")
"""

from __future__ import annotations

import dataclasses
import threading
import types
import typing
from typing import Any, TypeVar

from codegen_site.core.config import get_config

T = TypeVar("T")

_built: dict[tuple[type, tuple[str, ...]], tuple[dict, Any]] = {}
_lock = threading.Lock()


def section(cls: type[T], *path: str, config: dict | None = None) -> T:
    """The `cls` for the config table at `path` (e.g. "workflow" or "workflow", "embedded"), from
    the current config unless one is given. Rebuilt only when the config changed (a PATCH, a
    saved file, a test's override): the same object is returned until then."""
    config = get_config() if config is None else config
    key = (cls, path)
    cached = _built.get(key)
    if cached is not None and cached[0] is config:
        return cached[1]
    node: Any = config
    for part in path:
        node = node[part]
    value = build(cls, node, ".".join(path))
    with _lock:
        _built[key] = (config, value)
    return value


def build(cls: type[T], values: dict, where: str = "") -> T:
    """`cls` from a mapping: keys it does not name are ignored, missing ones take the field's default."""
    if not isinstance(values, dict):
        raise TypeError(f"{where or cls.__name__}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    arguments = {}
    for field in dataclasses.fields(cls):
        name = f"{where}.{field.name}" if where else field.name
        if field.name in values:
            arguments[field.name] = _convert(hints[field.name], values[field.name], name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise KeyError(f"Setting {name} is missing")
    return cls(**arguments)


def _convert(kind: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(kind):
        return build(kind, value, where)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        return _convert(next(option for option in options if option is not type(None)), value, where)
    if origin is tuple:
        element = typing.get_args(kind)[0]
        return tuple(_convert(element, item, where) for item in value)
    if origin is dict:
        return dict(value)
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise TypeError(f"Setting {where} must be {getattr(kind, '__name__', kind)}, not {value!r}")
