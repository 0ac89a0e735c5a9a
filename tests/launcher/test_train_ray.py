"""``shoal train`` on a real local Ray: an end-to-end smoke run during which one actor
process is killed; Ray restarts it and the run still finishes its budget."""

import json
import os
import signal
import subprocess

import pytest

from ..conftest import wait_until
from .test_train_local import train_command


def actor_pids() -> list[int]:
    """Processes of Ray actors running an ActorComponent (Ray names its workers so)."""
    found = subprocess.run(["pgrep", "-f", "ray::ActorComponent"], capture_output=True,
                           text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.timeout(300)
def test_train_on_local_ray_survives_a_killed_actor(tmp_path):
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        train_command(tmp_path, "--actors", "2", "--total-env-steps", "12000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> bool:
            logs = list(runs.glob("*/events.jsonl"))
            return bool(logs) and '"throughput"' in logs[0].read_text()

        wait_until(running, timeout=180, what="the run to report throughput")
        wait_until(lambda: len(actor_pids()) == 2, timeout=60, what="two actor processes")
        targets = next(runs.glob("*/prometheus_targets.json"))
        before = json.loads(targets.read_text())
        victim = actor_pids()[0]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr[-3000:]  # no target: the budget ended it
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 12000 and summary["updates"] > 0
    events = [json.loads(line) for line in
              (tmp_path / "runs").glob("*/events.jsonl").__next__().read_text().splitlines()]
    assert any(e["event"] == "actor_restarted" for e in events), "Ray did not restart it"
    after = json.loads(targets.read_text())  # the restarted actor's new /metrics port
    assert len(after) == len(before) == 4 and after != before
    assert events[0]["launch"] == "ray"
    assert os.path.exists(os.path.join(summary["run_dir"], "learner", "learner.pt"))
