"""A real, short DQN training in one process (replay server, learner, actor as threads,
gRPC over loopback), and resuming it."""

import json
import subprocess
import sys

import pytest
import torch

# small batches, few updates: learns quickly in one process, where threads share the GIL
FAST = {"batch_size": 64, "samples_per_insert": 8, "learning_starts": 500,
        "target_update_interval": 100, "epsilon_decay_steps": 3000}


def train_command(tmp_path, *extra: str) -> list[str]:
    """``shoal train`` of DQN on CartPole with the FAST config, runs under tmp_path/runs."""
    config = tmp_path / "fast.yaml"
    config.write_text(json.dumps(FAST))  # JSON is YAML
    return [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "dqn",
            "--env", "CartPole-v1", "--envs-per-actor", "4", "--config", str(config),
            "--run-dir", str(tmp_path / "runs"), "--json", *extra]


def train(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(tmp_path, "--local", "--actors", "1", *extra),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("train")
    result = train(tmp_path, "--seed", "0", "--total-env-steps", "14000")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return tmp_path, result, summary


def test_dqn_learns_cartpole_beyond_random(trained):
    _, result, summary = trained
    assert result.returncode == 1, result.stderr  # no target given: the budget ends it
    assert set(summary) == {"reached", "mean_return", "env_steps", "updates",
                            "seconds_from_first_step", "seconds_total", "run_dir"}
    # a random policy averages ~22 on CartPole
    assert summary["mean_return"] >= 60, summary
    assert summary["env_steps"] >= 14000 and summary["updates"] > 500


def test_run_directory_holds_config_events_and_checkpoint(trained):
    _, _, summary = trained
    from pathlib import Path

    run_dir = Path(summary["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algorithm_config"]["samples_per_insert"] == 8
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = {event["event"] for event in events}
    assert {"start", "episode", "summary"} <= kinds
    checkpoint = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert checkpoint["counters"]["env_steps"] == summary["env_steps"]
    targets = json.loads((run_dir / "prometheus_targets.json").read_text())
    assert sorted(group["labels"]["shoal_instance"] for group in targets) == [
        "actor-0", "launcher", "learner", "replay"]


def test_plot_draws_learning_and_throughput_curves_of_a_real_run(trained, tmp_path):
    from pathlib import Path

    _, _, summary = trained
    result = subprocess.run(
        [sys.executable, "-m", "shoal.launcher.cli", "plot", summary["run_dir"],
         summary["run_dir"], "--out", str(tmp_path / "plots")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pictures = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in pictures] == ["learning_curves.png", "throughput.png"]
    for picture in pictures:
        content = picture.read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 10_000


def test_resume_continues_counters_and_weights(trained):
    tmp_path, _, summary = trained
    from pathlib import Path

    run_dir = Path(summary["run_dir"])
    before = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    result = train(tmp_path, "--resume", str(run_dir),
                   "--total-env-steps", str(summary["env_steps"] + 2000))
    resumed = json.loads(result.stdout.strip().splitlines()[-1])
    after = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert resumed["run_dir"] == summary["run_dir"]
    assert summary["env_steps"] < resumed["env_steps"] < summary["env_steps"] + 4000
    assert after["learner"]["updates"] > before["learner"]["updates"]
    assert after["counters"]["published_version"] > before["counters"]["published_version"]
    # the run's counters came back from the checkpoint
    start = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
             if '"start"' in line][-1]
    assert start["resumed"]["env_steps"] == summary["env_steps"]


def test_sigterm_stops_the_run_cleanly_with_checkpoint_and_summary(tmp_path):
    import os
    import signal
    from pathlib import Path

    from ..conftest import wait_until

    runs = tmp_path / "runs"
    process = subprocess.Popen(
        train_command(tmp_path, "--local", "--actors", "1", "--total-env-steps", "10000000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any('"throughput"' in p.read_text()
                               for p in runs.glob("*/events.jsonl")),
                   timeout=120, what="the run to be under way")
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    run_dir = Path(summary["run_dir"])
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "summary" and last["interrupted"] is True
    saved = torch.load(run_dir / "learner" / "learner.pt", weights_only=False)
    assert saved["counters"]["env_steps"] == summary["env_steps"]


def test_dqn_trains_on_atari_frames_end_to_end(tmp_path):
    """Pong through the whole loop: preprocessed uint8 frames, lz4 on the wire and in the
    table, the Nature CNN on the learner. Learning Pong is far beyond a test's budget."""
    from pathlib import Path

    config = tmp_path / "atari.yaml"
    config.write_text(json.dumps({"batch_size": 32, "buffer_size": 5000,
                                  "learning_starts": 500, "samples_per_insert": 4}))
    result = subprocess.run(
        [sys.executable, "-m", "shoal.launcher.cli", "train", "--algo", "dqn",
         "--env", "ALE/Pong-v5", "--local", "--actors", "1", "--envs-per-actor", "2",
         "--total-env-steps", "2400", "--config", str(config),
         "--run-dir", str(tmp_path / "runs"), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["updates"] > 0
    run_dir = Path(summary["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(event for event in events if event["event"] == "start")
    assert start["settings"]["algorithm_config"]["batch_size"] == 32
    episodes = [event["env_return"] for event in events if event["event"] == "episode"]
    assert episodes and all(-21 <= r <= 21 and r == int(r) for r in episodes)  # Pong scores
    assert torch.load(run_dir / "learner" / "learner.pt",
                      weights_only=False)["learner"]["updates"] >= summary["updates"]


def test_a_run_with_tls_trains_over_encrypted_channels(tmp_path):
    result = train(tmp_path, "--total-env-steps", "3000", "--tls")
    assert result.returncode == 1, result.stderr[-3000:]  # the budget ended it
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 3000 and summary["updates"] > 0
    from pathlib import Path

    run_dir = Path(summary["run_dir"])
    assert (run_dir / "tls" / "tls.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert json.loads((run_dir / "config.json").read_text())["tls"] is True
