"""The ``shoal`` command as a user runs it: exit codes and stderr lines. The tables of bad
arguments run ``main`` in this process (a subprocess spends seconds importing torch for
each); one case of each table also runs as a real subprocess, so the process's own exit
code and stderr stay under test."""

import subprocess
import sys

import pytest

from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.config import on_policy

from .test_cli_hardening import run_in_process


def shoal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal.launcher.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(code: int, stderr: str, message: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("shoal: error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr


BAD_ARGUMENTS = [
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
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_print_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args,
                                                 message):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    code, _, err = run_in_process(capsys, *(arg.replace("{tmp}", str(tmp_path))
                                            for arg in args))
    assert_one_error_line(code, err, message)


@pytest.mark.parametrize(("args", "message"), [BAD_ARGUMENTS[1], BAD_ARGUMENTS[6]])
def test_a_shoal_process_given_bad_arguments_prints_one_line_and_exits_2(
        tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    result = shoal(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert_one_error_line(result.returncode, result.stderr, message)


def test_replay_demo_runs_a_server_process_end_to_end():
    result = shoal("replay-demo", "--items", "5000", "--batches", "20")
    assert result.returncode == 0, result.stderr
    assert "size 5,000 of 1,000,000" in result.stdout
    assert "5,120 updated" in result.stdout
    assert "checkpoint-000001" in result.stdout
    assert "server stopped with SIGTERM (exit 0)" in result.stdout


BAD_TRAIN_ARGUMENTS = [
    (["--algo", "ppo9", "--env", "CartPole-v1"],
     f"--algo: expected one of {sorted(ALGORITHMS)}"),  # the registry's, whatever it holds
    (["--algo", "dqn", "--env", "NoSuchEnv-v0"], "--env: "),
    (["--algo", "dqn", "--env", "CartPole-v1", "--actors", "0"], "--actors: expected a positive"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "-5"],
     "--total-env-steps: expected a positive"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--config", "/nonexistent.yaml"],
     "--config: cannot read /nonexistent.yaml"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--resume", "/nonexistent"],
     "--resume: no learner checkpoint in /nonexistent"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--max-policy-lag", "2"],
     f"--max-policy-lag: only for on-policy algorithms ({', '.join(on_policy())}), not dqn"),
    (["--algo", "ppo", "--env", "CartPole-v1", "--max-policy-lag", "-1"],
     "--max-policy-lag: expected >= 0, got -1"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--return-window", "0"],
     "--return-window: expected a positive"),
    (["--algo", "sac", "--env", "CartPole-v1"],
     "--algo: sac acts in box action spaces; CartPole-v1 has a discrete one"),
    (["--algo", "dqn", "--env", "Pendulum-v1"],
     "--algo: dqn acts in discrete action spaces; Pendulum-v1 has a box one"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--actors", "4", "--max-actors", "3"],
     "--max-actors: expected >= actors (4), got 3"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "4"],
     "--autoscale: expected MIN:MAX actor counts, e.g. 1:8, got '4'"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "3:2"],
     "--autoscale: expected 1 <= MIN <= MAX, got '3:2'"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--autoscale", "2:4", "--actors", "5"],
     "--actors: expected within autoscale 2:4, got 5"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--replay-checkpoint-every", "-1"],
     "--replay-checkpoint-every: expected seconds >= 0, got -1.0"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--checkpoint-every", "0"],
     "--checkpoint-every: expected a positive count, got 0"),
    (["--algo", "dqn", "--env", "CartPole-v1", "--tls-cert", "/nonexistent.crt"],
     "--tls-cert/--tls-key: give both, or neither"),
    (["--algo", "ppo", "--env", "CartPole-v1", "--autoscale", "1:4"],
     "--autoscale: actors: ppo trains on one rollout from each actor per update"),
]


@pytest.mark.parametrize(("args", "message"), BAD_TRAIN_ARGUMENTS)
def test_bad_train_arguments_exit_2_with_one_line(capsys, args, message):
    code, _, err = run_in_process(capsys, "train", "--local", *args)
    assert_one_error_line(code, err, message)


@pytest.mark.parametrize(("args", "message"), [BAD_TRAIN_ARGUMENTS[3],
                                               BAD_TRAIN_ARGUMENTS[9]])
def test_a_shoal_train_process_given_bad_arguments_exits_2_with_one_line(args, message):
    result = shoal("train", "--local", *args)
    assert_one_error_line(result.returncode, result.stderr, message)
