"""A run directory: the resolved config, a JSON-lines event log, checkpoints.

    runs/dqn-CartPole-v1-20261123-190000/
        config.json        everything the run was started with, defaults filled in
        events.jsonl       one JSON object a line: episodes, losses, throughput, summary;
                           "failed" (with each failed component's traceback) if it failed
        prometheus_targets.json   every process's /metrics address (Prometheus file_sd)
        learner/           learner checkpoints
        *.png              what `shoal plot` draws
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO


class EventLog:
    """Appends events as JSON lines; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": round(time.time(), 3), **fields})
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if event is None or e["event"] == event]
