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
