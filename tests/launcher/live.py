"""Watching live ``shoal`` processes until something has happened, then stopping them.

Tests of live runs wait for the condition they check (an event in the run's log, a value
on a /metrics page, a line in a process's output), each wait bounded by a deadline sized
for a loaded machine; they never let a step budget or a duration stand in for "until X
happened", which holds only as long as one process outruns another.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.launcher.rates import read_targets, scrape

from ..conftest import wait_until

# Deadlines: bounds on a hang, not guesses at speed. An unloaded 2-core machine takes
# 20-40 s from ``shoal train`` on a local Ray to its first throughput event, and seconds
# for the rest; with busy loops on both cores beside it (and other runs sharing them) it
# has taken over 4 minutes to start. A condition that holds ends its wait at once.
START = 600      # a run (or a Ray session) up to its first throughput event
CONDITION = 300  # something a running run does (train, insert, restart a component)
STOP = 180       # SIGTERM to the summary
# The pytest-timeout of a test of live runs: above its deadlines, so that a hang fails on
# one of them, saying which, while a loaded machine's slow pass still passes.
LIVE_TEST_TIMEOUT = 1800
# ``subprocess.run`` of a run to its step budget (which the test measures by steps, and
# which rate limiter or synchronous actors keep in step with training at any speed).
RUN_TO_BUDGET = 900


class EventReader:
    """A run's ``events.jsonl``, read as it grows: each call parses only the lines added
    since the last, and a last line still being written waits for the next call."""

    def __init__(self, runs: Path) -> None:
        self._runs = runs
        self._path: Path | None = None
        self._offset = 0
        self._events: list[dict[str, Any]] = []

    def __call__(self, kind: str | None = None) -> list[dict[str, Any]]:
        if self._path is None:
            logs = sorted(self._runs.glob("*/events.jsonl"))
            if not logs:
                return []
            self._path = logs[0]
        with open(self._path, "rb") as log:
            log.seek(self._offset)
            new = log.read()
        whole = new[:new.rfind(b"\n") + 1]
        self._offset += len(whole)
        self._events += [json.loads(line) for line in whole.splitlines() if line.strip()]
        return [e for e in self._events if kind is None or e["event"] == kind]

    def latest(self, kind: str) -> dict[str, Any]:
        """The newest event of ``kind``; {} before the first."""
        found = self(kind)
        return found[-1] if found else {}


class LiveTrain:
    """``shoal train`` in the background: output to files (a pipe nobody reads while the
    run goes could fill and stall it), its event log read as it grows."""

    def __init__(self, tmp_path: Path, command: list[str], *,
                 env: dict[str, str] | None = None) -> None:
        self.runs = tmp_path / "runs"
        self._stdout_path, self._stderr_path = tmp_path / "train.out", tmp_path / "train.err"
        self._stdout = open(self._stdout_path, "w")  # noqa: SIM115 - closed in close()
        self._stderr = open(self._stderr_path, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(command, stdout=self._stdout, stderr=self._stderr,
                                        env=env)
        self.events = EventReader(self.runs)

    def latest(self, kind: str) -> dict[str, Any]:
        return self.events.latest(kind)

    @property
    def stdout(self) -> str:
        return self._stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text()

    def run_dir(self) -> Path:
        return next(self.runs.glob("*/events.jsonl")).parent

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> None:
        """Until ``condition()`` holds; fails at once, saying why, if the run ended first."""
        wait_until(lambda: self.process.poll() is not None or condition(), timeout=timeout,
                   what=what, interval=0.25)
        assert self.process.poll() is None, (
            f"the run ended ({self.process.returncode}) before {what}:\n{self.stderr[-3000:]}")

    def wait_training(self, timeout: float = START) -> None:
        """Until a throughput event says the learner has trained."""
        self.wait_for(lambda: self.latest("throughput").get("updates", 0) > 0, timeout,
                      "the run to report throughput with updates")

    def stop(self, timeout: float = STOP) -> dict[str, Any]:
        """SIGTERM; the run stops its components in order and prints its summary (exit 130)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        assert self.process.returncode == 130, self.stderr[-3000:]
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        """After a failure: SIGTERM (the run stops its Ray workers too), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)
        self._stdout.close()
        self._stderr.close()

    def __enter__(self) -> LiveTrain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def metric(address: str, name: str) -> float:
    """One counter or gauge of the /metrics page at ``address``, summed over its labels
    (0 while the page does not answer)."""
    return scrape({"it": address}, timeout=10).get((name, "it"), 0.0)


def run_metric(run_dir: Path, instance: str, name: str) -> float:
    """``metric`` of one shoal instance of a run, found through its targets file."""
    address = read_targets(run_dir).get(instance)
    return 0.0 if address is None else metric(address, name)


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: pid -> command line. Tests find their own run's Ray
    workers so, not those of whatever else runs on the machine."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True,
                           check=True).stdout
    parents, commands = {}, {}
    for row in table.splitlines():
        fields = row.split(None, 2)
        if len(fields) >= 2:
            child, parent = int(fields[0]), int(fields[1])
            parents[child] = parent
            commands[child] = fields[2] if len(fields) == 3 else ""
    found = {}
    for child in parents:
        ancestor = parents[child]
        while ancestor > 1 and ancestor != pid:
            ancestor = parents.get(ancestor, 0)
        if ancestor == pid:
            found[child] = commands[child]
    return found


def ray_workers(pid: int, component: str) -> list[int]:
    """The processes below ``pid`` running Ray actors of ``component`` (Ray names its
    workers ``ray::Component...``)."""
    pattern = re.compile(rf"^ray::{component}\b")
    return sorted(child for child, command in descendants(pid).items()
                  if pattern.match(command))
