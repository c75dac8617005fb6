"""Type-checked construction of the configuration dataclasses from TOML tables and CLI overrides.

Every value is checked against its field's annotation when the config loads, so a mistake is a clear
start-up error naming the key and the expected type (`queue.max_queued: expected an integer, got the
string '64'`), not a failure at the first request. Understood annotations: bool, int, float (an int is
accepted), str, Path, enums (by value), `X | None`, nested dataclasses (TOML tables), `tuple[X, ...]`,
`list[X]` and `dict[str, X]`. A bool is not an int here, although Python says it is.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has the wrong type or an unknown name; the message names the key."""


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", Path: "a path"}


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """An instance of the dataclass `cls` from `data`, every value checked; missing keys keep defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(prefix + name for name in unknown)
        raise ConfigError(f"unknown {cls.__name__} settings: {names}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce(hints[name], value, prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def coerce(hint: Any, value: Any, key: str) -> Any:
    """`value` as the annotation `hint` asks for; ConfigError naming `key` if it is not one."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _coerce_union(typing.get_args(hint), value, key)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, f"{key}.")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _coerce_enum(hint, value, key)
    if origin in (tuple, list):
        return _coerce_sequence(hint, origin, value, key)
    if origin is dict:
        return _coerce_mapping(hint, value, key)
    if hint in _TYPE_NAMES:
        return _coerce_scalar(hint, value, key)
    return value  # an annotation this checker does not know: taken as given


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {_describe(value)}")


def _coerce_scalar(hint: type, value: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is Path:
        if isinstance(value, str | Path):
            return Path(value)
    elif isinstance(value, str):
        return value
    raise _fail(key, _TYPE_NAMES[hint], value)


def _coerce_union(options: tuple[Any, ...], value: Any, key: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise _fail(key, "a value", value)
    candidates = [option for option in options if option is not type(None)]
    errors = []
    for option in candidates:
        try:
            return coerce(option, value, key)
        except ConfigError as error:
            errors.append(str(error).partition(": expected ")[2].partition(", got ")[0])
    raise _fail(key, " or ".join(errors), value)


def _coerce_enum(hint: type[enum.Enum], value: Any, key: str) -> Any:
    if isinstance(value, hint):
        return value
    allowed = [str(member.value) for member in hint]
    try:
        return hint(value)
    except ValueError:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {_describe(value)}") from None


def _coerce_sequence(hint: Any, origin: type, value: Any, key: str) -> Any:
    if not isinstance(value, list | tuple):
        raise _fail(key, "an array", value)
    args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
    item_hint = args[0] if args else Any
    items = [coerce(item_hint, item, f"{key}[{index}]") for index, item in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_mapping(hint: Any, value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise _fail(key, "a table", value)
    args = typing.get_args(hint)
    value_hint = args[1] if len(args) == 2 else Any
    return {name: coerce(value_hint, item, f"{key}.{name}") for name, item in value.items()}
