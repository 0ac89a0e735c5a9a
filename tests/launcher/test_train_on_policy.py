"""PPO and A2C through the whole on-policy loop in one process: synchronous actors write
one rollout per weight version to the FIFO table, the learner trains on it and publishes."""

import json
import subprocess
import sys

import pytest

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]


@pytest.mark.parametrize(("algo", "envs", "steps", "rollout", "threshold"), [
    ("ppo", 8, 15_000, 32, 100),    # measured 281 (seed 0)
    ("a2c", 16, 40_000, 5, 80),     # measured 195 (seed 0)
])
def test_learns_cartpole_beyond_random_and_evaluates(tmp_path, algo, envs, steps, rollout,
                                                      threshold):
    result = subprocess.run(
        [*SHOAL, "train", "--algo", algo, "--env", "CartPole-v1", "--local", "--actors", "1",
         "--envs-per-actor", str(envs), "--total-env-steps", str(steps), "--seed", "0",
         "--run-dir", str(tmp_path / "runs"), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]  # no target: the budget ends it
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mean_return"] >= threshold, summary  # random play averages ~22
    # synchronous: one rollout of T steps x E envs per update, nothing trained twice
    assert abs(summary["updates"] - summary["env_steps"] / (rollout * envs)) <= 2, summary
    evaluation = subprocess.run([*SHOAL, "eval", summary["run_dir"], "--episodes", "3",
                                 "--json"], capture_output=True, text=True, timeout=120)
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout.strip().splitlines()[-1])["mean_return"] > 30
