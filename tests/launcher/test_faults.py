"""A real ``shoal train`` on a local Ray survives its replay service and its learner being
killed (SIGKILL, no goodbye): Ray restarts each, the replay service from its last
checkpoint and the learner from its own with its counters, on the ports of their last
lives; actors and learner reconnect; the run reaches its step budget."""

import json
import os
import signal
import subprocess

import pytest
import torch

from ..conftest import wait_until
from .test_train_local import train_command


def pids_of(component: str) -> list[int]:
    """Processes of Ray actors running ``component`` (Ray names its workers so)."""
    found = subprocess.run(["pgrep", "-f", f"ray::{component}"], capture_output=True,
                           text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.timeout(400)
def test_run_survives_killed_replay_service_and_learner(tmp_path):
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        train_command(tmp_path, "--actors", "2", "--total-env-steps", "40000",
                      "--replay-checkpoint-every", "1", "--checkpoint-every", "200"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def events() -> list[dict]:
        logs = list(runs.glob("*/events.jsonl"))
        return ([json.loads(line) for line in logs[0].read_text().splitlines()]
                if logs else [])

    def latest(kind: str) -> dict:
        """The newest event of ``kind``; {} before the first."""
        found = [e for e in events() if e["event"] == kind]
        return found[-1] if found else {}

    try:
        wait_until(lambda: bool(latest("throughput")), timeout=180,
                   what="the run to report throughput")
        run_dir = next(runs.glob("dqn-*"))
        wait_until(lambda: (run_dir / "replay" / "LATEST").exists()
                   and (run_dir / "learner" / "learner.pt").exists(), timeout=120,
                   what="a replay checkpoint and a learner checkpoint")

        # The replay service: killed, restored from its checkpoint, found again.
        inserted_before = latest("throughput")["replay_inserted"]
        os.kill(pids_of("ReplayComponent")[0], signal.SIGKILL)
        wait_until(lambda: bool(latest("replay_restarted")), timeout=120,
                   what="Ray to restart the replay service")
        restarted = latest("replay_restarted")
        assert restarted["restored_from"] is not None and restarted["size"] > 0
        wait_until(lambda: latest("throughput")["replay_inserted"]
                   > restarted["inserted_items"] + 2000, timeout=120,
                   what="actors to write to the restarted service")
        assert restarted["inserted_items"] <= inserted_before + 100_000

        # The learner: killed, resumed from its checkpoint with its counters.
        updates_before = latest("throughput")["updates"]
        os.kill(pids_of("LearnerComponent")[0], signal.SIGKILL)
        wait_until(lambda: bool(latest("learner_restarted")), timeout=120,
                   what="Ray to restart the learner")
        resumed = latest("learner_restarted")
        assert 0 < resumed["resumed_updates"] <= updates_before + 200
        assert resumed["resumed_updates"] % 200 == 0  # a checkpoint's count
        wait_until(lambda: latest("throughput")["updates"] > resumed["resumed_updates"] + 100,
                   timeout=120, what="the restarted learner to train")

        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr[-3000:]  # no target: the budget ended it
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 40000
    saved = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert saved["counters"]["env_steps"] == summary["env_steps"]
