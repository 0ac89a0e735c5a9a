"""PPO on Pong through the whole loop in one process: real frames, the shared Nature CNN,
zstd-compressed rollouts on the wire and in the queue. Learning Pong is far beyond a test's
budget; this checks that updates happen and the run ends with its summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .live import LIVE_TEST_TIMEOUT, RUN_TO_BUDGET

# ~30 small updates (1 epoch of 2 minibatches of 32 steps) keep the run near 30 s here
SMALL = {"rollout_length": 32, "update_epochs": 1, "num_minibatches": 2}

# Synchronous PPO: the actor waits for the weights of each update before its next rollout,
# so the step budget holds updates whatever the machine's speed; the deadline bounds a hang.
pytestmark = pytest.mark.timeout(LIVE_TEST_TIMEOUT)


def test_ppo_trains_on_atari_frames_end_to_end(tmp_path):
    config = tmp_path / "ppo_atari.yaml"
    config.write_text(json.dumps(SMALL))  # JSON is YAML
    result = subprocess.run(
        [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "ppo",
         "--env", "ALE/Pong-v5", "--local", "--actors", "1", "--envs-per-actor", "2",
         "--total-env-steps", "2000", "--config", str(config),
         "--run-dir", str(tmp_path / "runs"), "--json"],
        capture_output=True, text=True, timeout=RUN_TO_BUDGET)
    assert result.returncode == 0, result.stderr[-2000:]  # no target: the budget ends it
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 2000 and summary["updates"] > 0, summary
    run_dir = Path(summary["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(event for event in events if event["event"] == "start")
    assert start["settings"]["algorithm"]["rollout_length"] == 32
    assert events[-1]["event"] == "summary"
    saved = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert saved["learner"]["updates"] >= summary["updates"]
    assert any(name.startswith("torso.") for name in saved["learner"]["network"])
