"""What the benchmarks that drive a live ``shoal train`` share: the command, reading the
run's event log while it is being written, and stopping the run as a scheduler would.

Imported by its siblings (``import live_run``): a benchmark runs as a script from this
folder, which is then first on ``sys.path``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]  # the `shoal` entry point
HUGE_BUDGET = 10**12  # env steps: the benchmark, not the budget, ends a run


def read_events(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's events so far (only those of ``kind`` when given); a line the run is
    writing right now is left for the next read."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or event.get("event") == kind:
            events.append(event)
    return events


def terminate(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, as a scheduler would send: shoal stops its components, checkpoints and
    prints its summary. SIGKILL only if it has not exited ``grace`` seconds later."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"shoal train did not exit {grace:.0f}s after SIGTERM", file=sys.stderr)
        process.kill()
        process.wait()


class EventTail:
    """Reads a live events.jsonl incrementally: each ``read()`` returns only the events
    written since the last one. A long run's log grows by an episode line every few
    milliseconds, so rereading it whole every poll (``read_events``) costs more the longer
    the run; a soak polls for half an hour."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        """Events completed since the last call; a line being written waits for the next."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended with a newline
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events


def wait_for_run_dir(parent: Path, process: subprocess.Popen, timeout: float = 120.0) -> Path:
    """The run directory ``shoal train --run-dir parent`` made, once its event log has a
    throughput line (Ray up, every component answering); raises if the command exits or
    ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in parent.glob("*/events.jsonl"):
            if b'"throughput"' in log.read_bytes():
                return log.parent
        if process.poll() is not None:
            raise RuntimeError(f"shoal train exited with {process.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"shoal train: no throughput line after {timeout:.0f} s")
