"""Configuration values checked against a config dataclass's annotations, before a run
creates anything: the dataclass would take a string learning rate as it is, and the run
would die of it in the optimizer. ``launcher/config.py`` checks every section with it."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import types
import typing
from typing import Any


class ConfigTypeError(ValueError):
    """A key the config does not have (``key`` None), or a value not of its field's type
    (``key`` names the field); ``message`` says which, without saying where it came from."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message if key is None else f"{key}: {message}")
        self.key = key
        self.message = message


class _Mismatch(Exception):
    """A value that is not of the type a config field declares."""


_UNIONS = (typing.Union, types.UnionType)
_DOTLESS_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""3e-4: a float, which PyYAML (YAML 1.1) reads as a string for want of a dot."""


def _conform(hint: Any, value: Any) -> Any:
    """``value`` as a field declared ``hint`` holds it, or _Mismatch. Converts only what YAML
    cannot say: a list for a tuple, an int for a float, a dotless float from its string.
    A bool is not an int here (YAML's ``true`` for a batch size is a mistake)."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        for member in members:
            with contextlib.suppress(_Mismatch):
                return _conform(member, value)
        raise _Mismatch
    if origin is typing.Literal:
        if any(type(value) is type(member) and value == member for member in members):
            return value
        raise _Mismatch
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if origin is tuple and members and members[-1] is not Ellipsis:  # tuple[int, str]
            if len(value) != len(members):
                raise _Mismatch
            return tuple(_conform(m, v) for m, v in zip(members, value, strict=True))
        items = [_conform(members[0] if members else Any, item) for item in value]
        return tuple(items) if origin is tuple else items
    if hint is type(None) and value is None:
        return None
    if hint is float and not isinstance(value, bool):
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and _DOTLESS_FLOAT.fullmatch(value.strip()):
            return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if (hint is bool and isinstance(value, bool)) or (hint is str and isinstance(value, str)):
        return value
    if hint in (type(None), float, int, bool, str):
        raise _Mismatch
    return value  # a type this check does not know: the dataclass judges it


def describe_type(hint: Any) -> str:
    """``hint`` in the words of a YAML file: lists, not tuples."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return " or ".join(describe_type(member) for member in members)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(member) for member in members)
    if origin in (tuple, list):
        if origin is tuple and members and members[-1] is not Ellipsis:
            return f"a list [{', '.join(_name(member) for member in members)}]"
        return f"a list of {_name(members[0]) if members else 'values'}"
    words = {type(None): "None", bool: "a bool (true or false)", int: "an int",
             float: "a float", str: "a str"}
    return words.get(hint, _name(hint))


def _name(hint: Any) -> str:
    return str(getattr(hint, "__name__", hint))


def unknown_keys(keys: list[str], known: list[str]) -> str:
    """"unknown key 'learning_rat' (did you mean 'learning_rate'?)", for each key."""
    parts = []
    for key in keys:
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return f"unknown key{'s' if len(keys) > 1 else ''} {', '.join(parts)}"


def checked_overrides(config_type: type, values: dict[Any, Any]) -> dict[str, Any]:
    """``values`` as the config dataclass's annotations type them; the first one that is
    not, named with the type and the value."""
    hints = typing.get_type_hints(config_type)
    fields = [field.name for field in dataclasses.fields(config_type) if field.init]
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        raise ConfigTypeError(None, f"{unknown_keys(unknown, fields)}; {config_type.__name__} "
                                    f"has {fields}")
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = _conform(hints[key], value)
        except _Mismatch:
            raise ConfigTypeError(key, f"expected {describe_type(hints[key])}, "
                                       f"got {value!r}") from None
    return checked
