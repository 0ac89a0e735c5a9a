"""A run directory: the resolved config, a JSON-lines event log, checkpoints.

    runs/dqn-CartPole-v1-20261123-190000/
        config.json        the run's configuration tree, defaults filled in (what
                           --print-config prints; --config reads it back)
        events.jsonl       one JSON object a line: episodes, losses, throughput, summary;
                           "failed" (with each failed component's traceback) if it failed
        tensorboard/       the same events' figures as TensorBoard scalars, at env steps
        prometheus_targets.json   every process's /metrics address (Prometheus file_sd)
        learner/           learner checkpoints (learner.pt, best.pt)
        *.png              what `shoal plot` draws
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from shoal.protos.transport import write_atomically


class Sink(Protocol):
    """Another reader of every event as it is written (TensorBoard's files)."""

    def __call__(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class EventLog:
    """Appends events as JSON lines; safe to call from several threads. ``sinks`` see each
    event too, and are closed with the log."""

    def __init__(self, path: Path, sinks: Sequence[Sink] = ()) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._sinks = list(sinks)

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record)
        with self._lock:
            self._file.write(line + "\n")
            for sink in self._sinks:
                sink(record)

    def close(self) -> None:
        with self._lock:
            self._file.close()
            for sink in self._sinks:
                sink.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CONFIG = "config.json"


def new_run_dir(parent: Path, algo: str, env: str, seed: int) -> Path:
    """``<run-dir>/<algo>-<env>-<time>-s<seed>``, never one that exists already."""
    stem = f"{algo}-{env.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}-s{seed}"
    candidate, suffix = parent / stem, 1
    while candidate.exists():
        suffix += 1
        candidate = parent / f"{stem}-{suffix}"
    return candidate


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / CONFIG, json.dumps(config, indent=1))


def read_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if event is None or e["event"] == event]


PROMETHEUS_TARGETS = "prometheus_targets.json"
TARGETS_INDEX = "prometheus_targets"
"""Beside the run directories, one file per running run: Prometheus's file_sd globs only
a path's last element, so ``runs/*/prometheus_targets.json`` cannot be watched, while
``runs/prometheus_targets/*.json`` can."""


def write_prometheus_targets(run_dir: Path, run: str, addresses: dict[str, str]) -> None:
    """Every process's /metrics in Prometheus's file_sd format, in the run directory (the
    record) and in the index beside it (what deploy/prometheus/prometheus.yml watches);
    rewritten when Ray restarts an actor, whose new life has a new port."""
    groups = [{"targets": [address], "labels": {"run": run, "component": name.split("-")[0],
                                                "shoal_instance": name}}
              for name, address in addresses.items()]
    index = run_dir.parent / TARGETS_INDEX
    index.mkdir(exist_ok=True)
    for path in (run_dir / PROMETHEUS_TARGETS, index / f"{run}.json"):
        write_atomically(path, json.dumps(groups, indent=1))


def remove_from_targets_index(run_dir: Path) -> None:
    """A finished run leaves the index (its processes are gone), not its own record."""
    (run_dir.parent / TARGETS_INDEX / f"{run_dir.name}.json").unlink(missing_ok=True)
