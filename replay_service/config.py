"""The replay server's YAML config: which tables, and where checkpoints go.

    checkpoint:               # optional
      directory: ./replay-checkpoints
      every_seconds: 60       # 0: only on request and at SIGTERM
    tables:
      - name: transitions
        max_size: 1000000
        selector: {type: prioritized, alpha: 0.6}   # or {type: uniform}, {type: fifo}
        rate_limiter: {type: min_size, min_size: 1000}
        #   {type: sample_to_insert_ratio, samples_per_insert: 8, min_size_to_sample: 1000,
        #    error_buffer: 2000}
        max_times_sampled: 0  # 0: unlimited
        seed: 0               # optional: seeds the sampling (default: fresh entropy)
        signature:
          obs: {dtype: float32, shape: [4]}
          action: {dtype: int64, shape: []}
      - name: rollouts
        queue: true           # Table.queue: fifo, sampled once, inserts wait when full
        max_size: 64
        signature: {...}

Every problem is reported as a ConfigError naming the key path, e.g.
``tables[0].selector.alpha: expected a number in [0, 1], got 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shoal.protos.tables import (
    FieldSpec,
    Fifo,
    MinSize,
    Prioritized,
    Queue,
    RateLimiter,
    SampleToInsertRatio,
    Selector,
    TableSpec,
    Uniform,
)
from shoal.replay_service.table import Table


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ReplayConfig:
    """The replay service's part of a training run's configuration (``launcher/config.py``);
    its table comes from the algorithm."""

    checkpoint_every_seconds: float = 30.0
    """Seconds between replay checkpoints, which a restarted replay service resumes from
    (0: only at the end)."""

    def __post_init__(self) -> None:
        if not self.checkpoint_every_seconds >= 0:
            raise ValueError(f"checkpoint_every_seconds: expected seconds >= 0, "
                             f"got {self.checkpoint_every_seconds}")


@dataclass
class ServerConfig:
    tables: list[Table]
    checkpoint_dir: Path | None
    checkpoint_every_seconds: float


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _only_keys(value: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _kwargs_for(value: Any, where: str, kinds: dict[str, Any]) -> Any:
    """``{type: name, **kwargs}`` (or a bare ``name``) -> kinds[name](**kwargs)."""
    if isinstance(value, str):
        value = {"type": value}
    value = dict(_mapping(value, where))
    kind = value.pop("type", None)
    if kind not in kinds:
        raise ConfigError(f"{where}.type: expected one of {sorted(kinds)}, got {kind!r}")
    try:
        return kinds[kind](**value)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None
    except ValueError as error:
        raise ConfigError(f"{where}.{error}") from None


SELECTORS: dict[str, Any] = {"prioritized": Prioritized, "uniform": Uniform, "fifo": Fifo}
RATE_LIMITERS: dict[str, Any] = {
    "min_size": MinSize, "sample_to_insert_ratio": SampleToInsertRatio, "queue": Queue,
}
TABLE_KEYS = {"name", "max_size", "selector", "rate_limiter", "max_times_sampled", "signature",
              "queue", "seed"}


def _signature(value: Any, where: str) -> dict[str, FieldSpec]:
    fields = _mapping(value, where)
    if not fields:
        raise ConfigError(f"{where}: expected at least one field")
    signature = {}
    for name, spec in fields.items():
        spec = _mapping(spec, f"{where}.{name}")
        _only_keys(spec, {"dtype", "shape", "compression", "frames"}, f"{where}.{name}")
        frames = spec.get("frames", False)
        if not isinstance(frames, bool):
            raise ConfigError(f"{where}.{name}.frames: expected true or false, got {frames!r}")
        try:
            signature[str(name)] = FieldSpec(spec.get("dtype", "float32"),
                                             tuple(spec.get("shape", ())),
                                             spec.get("compression", "none"), frames)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{where}.{name}.{error}") from None
    return signature


def spec_from_dict(value: Any, where: str = "table") -> TableSpec:
    """A ``tables:`` entry as the TableSpec it describes (``TableSpec.to_dict`` inverted);
    every problem a ConfigError naming its key path."""
    entry = _mapping(value, where)
    _only_keys(entry, TABLE_KEYS, where)
    for required in ("name", "max_size", "signature"):
        if required not in entry:
            raise ConfigError(f"{where}.{required}: required")
    name, max_size = entry["name"], entry["max_size"]
    if not isinstance(max_size, int) or isinstance(max_size, bool):
        raise ConfigError(f"{where}.max_size: expected an integer, got {max_size!r}")
    if max_size < 1:
        raise ConfigError(f"{where}.max_size: expected >= 1, got {max_size}")
    signature = _signature(entry["signature"], f"{where}.signature")
    seed = entry.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"{where}.seed: expected an integer >= 0, got {seed!r}")
    try:
        if entry.get("queue", False):
            _only_keys(entry, {"name", "max_size", "signature", "queue", "seed"}, where)
            return TableSpec.queue(str(name), max_size, signature, seed=seed)
        selector: Selector = _kwargs_for(entry.get("selector", "uniform"), f"{where}.selector",
                                         SELECTORS)
        limiter: RateLimiter = _kwargs_for(entry.get("rate_limiter", "min_size"),
                                           f"{where}.rate_limiter", RATE_LIMITERS)
        try:
            limiter.validate(max_size)
        except ValueError as error:
            raise ConfigError(f"{where}.rate_limiter.{error}") from None
        return TableSpec(str(name), max_size, signature, selector, limiter,
                         max_times_sampled=int(entry.get("max_times_sampled", 0)), seed=seed)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{where}.{error}") from None


def table_from_dict(value: Any, where: str = "table") -> Table:
    return Table.from_spec(spec_from_dict(value, where))


def server_config_from_dict(value: Any) -> ServerConfig:
    root = _mapping(value, "config")
    _only_keys(root, {"tables", "checkpoint"}, "config")
    entries = root.get("tables")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("tables: expected a non-empty list of tables")
    tables = [table_from_dict(entry, f"tables[{i}]") for i, entry in enumerate(entries)]
    names = [table.name for table in tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"tables: names must be distinct, got {names}")
    checkpoint = _mapping(root.get("checkpoint", {}), "checkpoint")
    _only_keys(checkpoint, {"directory", "every_seconds"}, "checkpoint")
    directory = checkpoint.get("directory")
    every = checkpoint.get("every_seconds", 0)
    if not isinstance(every, (int, float)) or every < 0:
        raise ConfigError(f"checkpoint.every_seconds: expected a number >= 0, got {every!r}")
    return ServerConfig(tables, Path(directory) if directory else None, float(every))


def load_server_config(path: Path) -> ServerConfig:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--config: {path} is not valid YAML ({error})") from None
    return server_config_from_dict(value)
