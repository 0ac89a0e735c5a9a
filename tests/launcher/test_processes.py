"""A run wired by hand from plain processes, as a user without Ray would: ``shoal tables``
into ``shoal replay-server``, then ``shoal learner`` and ``shoal actor`` pointed at it."""

import json
import re
import signal
import subprocess
import sys

import pytest

from shoal.algorithms.dqn import DQNConfig
from shoal.learner.checkpoint import load_checkpoint
from shoal.replay_service.client import ReplayClient

from ..conftest import wait_until
from .live import CONDITION, LIVE_TEST_TIMEOUT, START, STOP, metric
from .test_train_local import FAST

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]
ALGORITHM = ["--algo", "dqn", "--env", "CartPole-v1"]
STOPPED = re.compile(r"stopped after (\d+) env steps, (\d+) items sent, (\d+) stored, "
                     r"weights version (\d+)")


def start(tmp_path, name, *args):
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*SHOAL, *args], stdout=log, stderr=subprocess.STDOUT), log


def address_in(path, process):
    """The address a starting process writes to ``path``, once it is listening."""
    wait_until(lambda: path.exists() or process.poll() is not None, timeout=START,
               what=f"{path} to be written", interval=0.05)
    assert process.poll() is None, f"exited with {process.returncode}"
    return path.read_text().strip()


def logged(path, pattern, process) -> re.Match:
    """The first match of ``pattern`` in a process's log, once it has written it."""
    found: list[re.Match] = []

    def written() -> bool:
        match = pattern.search(path.read_text())
        if match:
            found.append(match)
        return bool(match) or process.poll() is not None

    wait_until(written, timeout=START, what=f"{pattern.pattern!r} in {path.name}",
               interval=0.05)
    assert found, f"exited with {process.returncode}:\n{path.read_text()[-3000:]}"
    return found[0]


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_replay_server_learner_and_actor_as_plain_processes(tmp_path):
    config = tmp_path / "fast.yaml"
    config.write_text(json.dumps(FAST))
    tables = subprocess.run([*SHOAL, "tables", *ALGORITHM, "--config", str(config)],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "tables.yaml").write_text(tables)
    token = ["--token-file", str(tmp_path / "token")]
    run_dir = tmp_path / "run"
    processes = []
    try:
        replay, log = start(tmp_path, "replay", "replay-server", "--config",
                            str(tmp_path / "tables.yaml"), *token,
                            "--address-file", str(tmp_path / "replay.address"))
        processes.append((replay, log))
        replay_address = address_in(tmp_path / "replay.address", replay)
        learner, log = start(tmp_path, "learner", "learner", *ALGORITHM, "--config", str(config),
                             *token, "--replay", replay_address, "--run-dir", str(run_dir),
                             "--address-file", str(tmp_path / "parameters.address"))
        processes.append((learner, log))
        parameters_address = address_in(tmp_path / "parameters.address", learner)
        actor_args = [*ALGORITHM, "--config", str(config), *token, "--replay", replay_address,
                      "--parameters", parameters_address, "--envs-per-actor", "4",
                      "--num-actors", "2"]
        # One actor runs until stopped: it is stopped once it plays weights the learner
        # trained (version 1 is the learner's initial weights), however long that takes.
        actor, log = start(tmp_path, "actor", "actor", *actor_args, "--index", "0")
        processes.append((actor, log))
        # The other takes its step budget, exactly, and stops by itself.
        budgeted, log = start(tmp_path, "budgeted", "actor", *actor_args, "--index", "1",
                              "--total-env-steps", "400")
        processes.append((budgeted, log))
        actor_metrics = logged(tmp_path / "actor.log",
                               re.compile(r"metrics at http://(\S+)/metrics"), actor).group(1)
        wait_until(lambda: actor.poll() is not None
                   or metric(actor_metrics, "shoal_actor_weights_version") > 1,
                   timeout=CONDITION, what="the actor to follow weights the learner trained",
                   interval=0.1)
        actor.send_signal(signal.SIGTERM)
        assert actor.wait(timeout=STOP) == 0, (tmp_path / "actor.log").read_text()[-3000:]
        assert budgeted.wait(timeout=CONDITION) == 0, (
            (tmp_path / "budgeted.log").read_text()[-3000:])
        stopped = STOPPED.search((tmp_path / "actor.log").read_text())
        assert stopped, (tmp_path / "actor.log").read_text()[-3000:]
        steps, sent, stored, version = map(int, stopped.groups())
        assert steps > 0 and 0 < stored <= sent
        assert version > 1, "the actor never followed weights the learner trained"
        stopped = STOPPED.search((tmp_path / "budgeted.log").read_text())
        assert stopped, (tmp_path / "budgeted.log").read_text()[-3000:]
        budget_steps, budget_sent, budget_stored, _ = map(int, stopped.groups())
        assert budget_steps == 400
        assert budget_stored == budget_sent > 0  # it ended by itself: its writer flushed

        table = DQNConfig(**FAST)
        with ReplayClient(replay_address, (tmp_path / "token").read_text().strip()) as client:
            info = client.info()["transitions"]
        # Nothing stored twice or from elsewhere, nothing acknowledged and then missing.
        # (A stopped actor waits a bounded time for the replay service to take what it
        # holds: the rate limiter may hold its last items longer, behind a slow learner.)
        assert stored + budget_stored <= info.inserted_items <= sent + budget_sent
        assert info.sampled_items >= table.batch_size

        learner.send_signal(signal.SIGTERM)
        assert learner.wait(timeout=STOP) == 0, (tmp_path / "learner.log").read_text()
        assert load_checkpoint(run_dir / "learner")["learner"]["updates"] > 0
        # no config.json here (no shoal train wrote one): shoal eval plays the checkpoint
        # from the configuration it carries
        assert not (run_dir / "config.json").exists()
        played = subprocess.run([*SHOAL, "eval", str(run_dir), "--latest", "--episodes", "2",
                                 "--json"], capture_output=True, text=True, timeout=STOP)
        assert played.returncode == 0, played.stderr[-3000:]
        assert len(json.loads(played.stdout.strip().splitlines()[-1])["returns"]) == 2
    finally:
        for process, log in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
