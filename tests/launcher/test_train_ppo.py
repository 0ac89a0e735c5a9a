"""PPO through the whole on-policy loop in one process: synchronous actors write one
rollout per weight version to the FIFO table, the learner trains on it and publishes."""

import json
import subprocess
import sys

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]


def test_ppo_learns_cartpole_beyond_random_and_evaluates(tmp_path):
    result = subprocess.run(
        [*SHOAL, "train", "--algo", "ppo", "--env", "CartPole-v1", "--local", "--actors", "1",
         "--envs-per-actor", "8", "--total-env-steps", "15000", "--seed", "0",
         "--run-dir", str(tmp_path / "runs"), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]  # no target: the budget ends it
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mean_return"] >= 100, summary  # random play averages ~22
    # synchronous: one rollout of 32 steps x 8 envs per update, nothing trained twice
    assert abs(summary["updates"] - summary["env_steps"] / (32 * 8)) <= 2, summary
    evaluation = subprocess.run([*SHOAL, "eval", summary["run_dir"], "--episodes", "3",
                                 "--json"], capture_output=True, text=True, timeout=120)
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout.strip().splitlines()[-1])["mean_return"] > 50
