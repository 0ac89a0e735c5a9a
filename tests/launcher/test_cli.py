"""The ``shoal`` command as a user runs it: real subprocesses, exit codes, stderr lines."""

import subprocess
import sys

import pytest


def shoal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal.launcher.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (["replay-server"], "the following arguments are required: --config"),
    (["replay-server", "--config", "x.yaml", "--port", "70000", "--token-file", "t"],
     "--port: expected 0..65535, got 70000"),
    (["replay-server", "--config", "/nonexistent.yaml", "--token-file", "{tmp}/t"],
     "--config: cannot read /nonexistent.yaml"),
    (["replay-server", "--config", "x.yaml"], "--token-file or SHOAL_TOKEN"),
    (["replay-demo", "--items", "10"], "--items: expected >= 256, got 10"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["actor", "--algo", "dqn", "--env", "CartPole-v1", "--replay", "nowhere",
      "--parameters", "127.0.0.1:1", "--token-file", "{tmp}/t"],
     "--replay: expected HOST:PORT, got 'nowhere'"),
    (["actor", "--algo", "dqn", "--env", "CartPole-v1", "--replay", "127.0.0.1:1",
      "--parameters", "127.0.0.1:1", "--index", "2", "--num-actors", "2",
      "--token-file", "{tmp}/t"], "--index: expected 0..1, got 2"),
    (["learner", "--algo", "dqn", "--env", "CartPole-v1", "--replay", "127.0.0.1:99999",
      "--run-dir", "{tmp}/run", "--token-file", "{tmp}/t"],
     "--replay: expected HOST:PORT, got '127.0.0.1:99999'"),
    (["learner", "--algo", "dqn", "--env", "CartPole-v1", "--replay", "127.0.0.1:1",
      "--run-dir", "{tmp}/run", "--resume", "--token-file", "{tmp}/t"],
     "--resume: no learner checkpoint in"),
    (["tables", "--algo", "sac9", "--env", "CartPole-v1"], "--algo: expected one of"),
    (["plot", "/nonexistent"], "RUN_DIR: no events.jsonl in /nonexistent"),
    (["actor", "--algo", "dqn", "--env", "CartPole-v1", "--replay", "127.0.0.1:1",
      "--parameters", "127.0.0.1:1", "--metrics-port", "-1", "--token-file", "{tmp}/t"],
     "--metrics-port: expected 0..65535, got -1"),
    (["top", "{tmp}"], "RUN_DIR: no prometheus_targets.json in"),
    (["scale", "{tmp}", "--actors", "3"], "RUN_DIR: no control.json in"),
    (["scale", "{tmp}", "--actors", "0"], "--actors: expected a positive count, got 0"),
])
def test_bad_arguments_print_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    result = shoal(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shoal: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_replay_demo_runs_a_server_process_end_to_end():
    result = shoal("replay-demo", "--items", "5000", "--batches", "20")
    assert result.returncode == 0, result.stderr
    assert "size 5,000 of 1,000,000" in result.stdout
    assert "5,120 updated" in result.stdout
    assert "checkpoint-000001" in result.stdout
    assert "server stopped with SIGTERM (exit 0)" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--algo", "ppo9", "--env", "CartPole-v1"],
     "--algo: expected one of ['a2c', 'dqn', 'ppo', 'sac']"),
    (["--algo", "dqn", "--env", "NoSuchEnv-v0"], "--env: "),
    (["--algo", "dqn", "--env", "CartPole-v1", "--actors", "0"], "--actors: expected a positive"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "-5"],
     "--total-env-steps: expected a positive"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--config", "/nonexistent.yaml"],
     "--config: cannot read /nonexistent.yaml"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--resume", "/nonexistent"],
     "--resume: no learner checkpoint in /nonexistent"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--max-policy-lag", "2"],
     "--max-policy-lag: only for on-policy algorithms (ppo, a2c), not dqn"),
    (["--algo", "ppo", "--env", "CartPole-v1", "--max-policy-lag", "-1"],
     "--max-policy-lag: expected >= 0, got -1"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--return-window", "0"],
     "--return-window: expected a positive"),
    (["--algo", "sac", "--env", "CartPole-v1"],
     "--algo: sac acts in box action spaces; CartPole-v1 has a discrete one"),
    (["--algo", "dqn", "--env", "Pendulum-v1"],
     "--algo: dqn acts in discrete action spaces; Pendulum-v1 has a box one"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--actors", "4", "--max-actors", "3"],
     "--max-actors: expected >= --actors (4), got 3"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "4"],
     "--autoscale: expected MIN:MAX actor counts, e.g. 1:8, got '4'"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "3:2"],
     "--autoscale: expected 1 <= MIN <= MAX, got '3:2'"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "2:4", "--actors", "5"],
     "--actors: expected within --autoscale 2:4, got 5"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--replay-checkpoint-every", "-1"],
     "--replay-checkpoint-every: expected seconds >= 0, got -1.0"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--checkpoint-every", "0"],
     "--checkpoint-every: expected a positive count, got 0"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--tls-cert", "/nonexistent.crt"],
     "--tls-cert/--tls-key: give both, or neither"),
    (["--algo", "ppo", "--env", "CartPole-v1", "--autoscale", "1:4"],
     "--autoscale: actors: ppo trains on one rollout from each actor per update"),
])
def test_bad_train_arguments_exit_2_with_one_line(args, message):
    result = shoal("train", "--local", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
