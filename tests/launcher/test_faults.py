"""A real ``shoal train`` on a local Ray survives its replay service and its learner being
killed (SIGKILL, no goodbye): Ray restarts each, the replay service from its last
checkpoint and the learner from its own with its counters, on the ports of their last
lives; actors and learner reconnect and the run goes on, then stops cleanly on SIGTERM
with its counters in its last checkpoint.

Each step waits for what it checks; the run has no step budget that could end it first
(on a fast machine) or that the test would have to wait out (on a slow one)."""

import os
import signal

import pytest
import torch

from .live import CONDITION, LIVE_TEST_TIMEOUT, START, LiveTrain, run_metric
from .test_train_local import train_command


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_run_survives_killed_replay_service_and_learner(tmp_path):
    command = train_command(tmp_path, "--actors", "2", "--total-env-steps", "1000000000",
                            "--replay-checkpoint-every", "1", "--checkpoint-every", "200")
    with LiveTrain(tmp_path, command) as run:
        latest = run.latest

        def since(event: dict) -> list[dict]:
            """The throughput events written after ``event``."""
            return [e for e in run.events("throughput") if e["time"] > event["time"]]

        run.wait_for(lambda: latest("throughput") and latest("placement"), START,
                     "the run to report throughput")
        run_dir = run.run_dir()
        pids = latest("placement")["pids"]
        run.wait_for(lambda: (run_dir / "replay" / "LATEST").exists()
                     and (run_dir / "learner" / "learner.pt").exists(), CONDITION,
                     "a replay checkpoint and a learner checkpoint")

        # The replay service: killed, restored from its checkpoint, found again.
        inserted_before = latest("throughput")["replay_inserted"]
        os.kill(pids["replay"], signal.SIGKILL)
        run.wait_for(lambda: latest("replay_restarted"), CONDITION,
                     "Ray to restart the replay service")
        restarted = latest("replay_restarted")
        assert restarted["pid"] != pids["replay"]
        assert restarted["restored_from"] is not None and restarted["size"] > 0
        assert restarted["inserted_items"] <= inserted_before + 100_000
        # Throughput events written after the restart: an earlier one reports the life
        # that was killed, whose count may already be past the mark.
        run.wait_for(lambda: since(restarted)
                     and since(restarted)[-1]["replay_inserted"]
                     > restarted["inserted_items"] + 2000, CONDITION,
                     "actors to write to the restarted service")

        # The learner: killed, resumed from its checkpoint with its counters.
        updates_before = run_metric(run_dir, "learner", "shoal_learner_updates_total")
        os.kill(pids["learner"], signal.SIGKILL)
        run.wait_for(lambda: latest("learner_restarted"), CONDITION,
                     "Ray to restart the learner")
        resumed = latest("learner_restarted")
        assert resumed["pid"] != pids["learner"]
        # A checkpoint's count (one each 200 updates) of the life killed: at most the
        # updates it had when the test read them, plus what it did in the instant after.
        assert 0 < resumed["resumed_updates"] <= updates_before + 200
        assert resumed["resumed_updates"] % 200 == 0
        run.wait_for(lambda: since(resumed)
                     and since(resumed)[-1]["updates"] > resumed["resumed_updates"] + 100,
                     CONDITION, "the restarted learner to train")
        steps_after_restarts = latest("throughput")["env_steps"]

        summary = run.stop()
    assert summary["env_steps"] >= steps_after_restarts
    assert summary["updates"] > resumed["resumed_updates"] + 100
    saved = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert saved["counters"]["env_steps"] == summary["env_steps"]
