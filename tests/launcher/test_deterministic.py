"""``shoal train --deterministic``: two launches with one seed give the same episodes, the
same evaluations and the same final weights, through the command line as a user runs it
and through ``shoal.train``; what it cannot honour is refused before anything starts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shoal
from shoal.launcher.run_dir import read_events
from shoal.learner.checkpoint import BEST, CHECKPOINT, load_checkpoint

from .live import LIVE_TEST_TIMEOUT
from .test_cli_hardening import one_error_line, run_in_process
from .test_train_local import FAST

# a greedy evaluation every 2,000 env steps: best.pt is written, and compared too
SECTIONS = {"learner": {"eval_every_env_steps": 2_000, "eval_episodes": 2}}


def deterministic_run(tmp_path: Path, name: str, seed: int) -> Path:
    """``shoal train --local --deterministic`` of DQN on CartPole to a 5,000-step budget;
    its run directory."""
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"algorithm": FAST, **SECTIONS}))  # JSON is YAML
    parent = tmp_path / name
    result = subprocess.run(
        [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "dqn", "--env",
         "CartPole-v1", "--local", "--deterministic", "--seed", str(seed),
         "--total-env-steps", "5000", "--config", str(config), "--run-dir", str(parent),
         "--json"], capture_output=True, text=True, timeout=LIVE_TEST_TIMEOUT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 5_000 and summary["updates"] > 100  # it trained
    return Path(summary["run_dir"])


def episodes(run_dir: Path) -> list[tuple[float, int, int, int]]:
    return [(e["env_return"], e["length"], e["version"], e["env_steps"])
            for e in read_events(run_dir / "events.jsonl", "episode")]


def evaluations(run_dir: Path) -> list[tuple[int, int, list[float]]]:
    return [(e["env_steps"], e["version"], e["returns"])
            for e in read_events(run_dir / "events.jsonl", "evaluation")]


def same_tensors(a: object, b: object) -> bool:
    """``a`` and ``b`` hold the same values bit for bit, tensors included, all the way down."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same_tensors(a[key], b[key]) for key in a))
    if isinstance(a, list | tuple):
        return (isinstance(b, list | tuple) and len(a) == len(b)
                and all(same_tensors(x, y) for x, y in zip(a, b, strict=True)))
    return bool(a == b)


@pytest.fixture(scope="module")
def dqn_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two runs with seed 0 and one with seed 1."""
    tmp_path = tmp_path_factory.mktemp("deterministic")
    return (deterministic_run(tmp_path, "first", 0), deterministic_run(tmp_path, "second", 0),
            deterministic_run(tmp_path, "other-seed", 1))


@pytest.mark.timeout(3 * LIVE_TEST_TIMEOUT)
def test_two_dqn_runs_with_one_seed_give_the_same_episodes_evaluations_and_weights(dqn_runs):
    first, second, other = dqn_runs
    played = episodes(first)
    assert len(played) > 50  # CartPole's early episodes are short: many to compare
    assert episodes(second) == played
    assert len(evaluations(first)) >= 2 and evaluations(second) == evaluations(first)
    for name in (CHECKPOINT, BEST):
        one, two = (load_checkpoint(run / "learner" / name) for run in (first, second))
        assert same_tensors(one["learner"], two["learner"]), name
        assert one["counters"] == two["counters"], name
    # the comparison can fail: another seed plays other episodes, trains other weights
    assert episodes(other) != played
    one, three = (load_checkpoint(run / "learner" / CHECKPOINT) for run in (first, other))
    assert not same_tensors(one["learner"]["online"], three["learner"]["online"])


def test_a_deterministic_run_is_said_in_its_events_and_resumes_are_refused(dqn_runs, capsys):
    first = dqn_runs[0]
    start = read_events(first / "events.jsonl", "start")[0]
    assert start["launch"] == "deterministic"
    assert start["settings"]["run"]["deterministic"] is True
    assert start["settings"]["run"]["actors"] == 1  # one actor unless told otherwise
    code, _, err = run_in_process(capsys, "train", "--resume", str(first), "--local")
    assert code == 2
    assert "--resume: a deterministic run is repeated from its seed" in one_error_line(err)


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_on_policy_runs_with_normalised_observations_repeat_through_the_python_api(tmp_path):
    """PPO: rollouts through the queue, and the observation statistics the actor reports
    travelling with the weights."""
    runs = [shoal.train("ppo", "Pendulum-v1", seed=0, deterministic=True,
                        normalize_observations=True, env_steps_per_update=512,
                        total_env_steps=2_048, eval_every_env_steps=0, run_dir=tmp_path / name)
            for name in ("first", "second")]
    assert runs[0].updates >= 3 and runs[0].mean_return == runs[1].mean_return
    first, second = (Path(run.run_dir) for run in runs)
    assert episodes(first) == episodes(second) and len(episodes(first)) >= 8
    one, two = (load_checkpoint(run / "learner" / CHECKPOINT) for run in (first, second))
    assert "observation_stats" in one["counters"]
    assert same_tensors(one["learner"], two["learner"])
    assert one["counters"] == two["counters"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--actors", "2"], "--actors: a deterministic run has one actor, got 2"),
    (["--autoscale", "1:3"], "--autoscale: a deterministic run has one actor throughout"),
    (["--tls"], "--tls: a deterministic run has one process, no channel to secure"),
    (["--address", "127.0.0.1:1"], "--address: a deterministic run trains in this process"),
])
def test_what_a_deterministic_run_cannot_honour_is_one_line_and_exit_2(capsys, tmp_path,
                                                                       flags, message):
    code, _, err = run_in_process(capsys, "train", "--algo", "dqn", "--env", "CartPole-v1",
                                  "--deterministic", "--run-dir", str(tmp_path), *flags)
    assert code == 2
    assert message in one_error_line(err)
    assert not any(tmp_path.iterdir())  # nothing created
