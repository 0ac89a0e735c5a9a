"""SAC through the whole off-policy loop in one process: random actions for the first
min_size_to_sample steps, then the squashed-Gaussian policy; one update of 256 per env step
held by the rate limiter; greedy evaluation plays the mean action."""

import json
import subprocess
import sys

import pytest

from .live import LIVE_TEST_TIMEOUT, RUN_TO_BUDGET, STOP

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]

# A run to its target or its step budget: learning per env step is what the test measures
# (the rate limiter holds it whatever the machine's speed), and the deadlines below bound
# a hang on a loaded machine.
pytestmark = pytest.mark.timeout(LIVE_TEST_TIMEOUT)


def test_sac_learns_pendulum_beyond_random_and_evaluates(tmp_path):
    # The run ends when its last 5 episodes average -700 (random play is about -1,200):
    # measured at 4,015 env steps (seed 0), greedy eval -263. The 8,000-step budget is
    # the failure: a SAC that does not learn ends there with exit 3 (target missed).
    result = subprocess.run(
        [*SHOAL, "train", "--algo", "sac", "--env", "Pendulum-v1", "--local", "--actors", "1",
         "--envs-per-actor", "1", "--total-env-steps", "8000", "--return-window", "5",
         "--target-return", "-700", "--seed", "0", "--run-dir", str(tmp_path / "runs"),
         "--json"],
        capture_output=True, text=True, timeout=RUN_TO_BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["reached"] and summary["mean_return"] >= -700, summary
    evaluation = subprocess.run([*SHOAL, "eval", summary["run_dir"], "--episodes", "3",
                                 "--json"], capture_output=True, text=True, timeout=STOP)
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout.strip().splitlines()[-1])["mean_return"] > -800
