"""A bad command line: one line on stderr (``shoal: error: ...``), exit code 2, nothing
created. The checks of values that are not run configuration (ports, addresses, counts of
the command itself) live here beside the error."""

from __future__ import annotations


class UsageError(Exception):
    """A bad argument or config value: one line on stderr, exit code 2."""


def positive(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{name}: expected a positive count, got {value}")
    return value


def port(name: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise UsageError(f"{name}: expected 0..65535, got {value}")
    return value


def address(name: str, value: str) -> str:
    host, _, number = value.rpartition(":")
    if not host or not number.isdigit() or not 0 < int(number) <= 65535:
        raise UsageError(f"{name}: expected HOST:PORT, got {value!r}")
    return value
