"""A run wired by hand from plain processes, as a user without Ray would: ``shoal tables``
into ``shoal replay-server``, then ``shoal learner`` and ``shoal actor`` pointed at it."""

import json
import re
import signal
import subprocess
import sys

from shoal.launcher.components import algorithm_config
from shoal.learner.checkpoint import load_checkpoint
from shoal.replay_service.client import ReplayClient

from ..conftest import wait_until
from .test_train_local import FAST

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]
ALGORITHM = ["--algo", "dqn", "--env", "CartPole-v1"]


def start(tmp_path, name, *args):
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*SHOAL, *args], stdout=log, stderr=subprocess.STDOUT), log


def address_in(path, process):
    """The address a starting process writes to ``path``, once it is listening."""
    wait_until(lambda: path.exists() or process.poll() is not None, timeout=120,
               what=f"{path} to be written")
    assert process.poll() is None, f"exited with {process.returncode}"
    return path.read_text().strip()


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
        actor = subprocess.run(
            [*SHOAL, "actor", *ALGORITHM, "--config", str(config), *token,
             "--replay", replay_address, "--parameters", parameters_address,
             "--envs-per-actor", "4", "--total-env-steps", "4000"],
            capture_output=True, text=True, timeout=180)
        assert actor.returncode == 0, actor.stderr
        stopped = re.search(r"stopped after (\d+) env steps, (\d+) items sent, "
                            r"weights version (\d+)", actor.stderr)
        assert stopped, actor.stderr
        steps, sent, version = map(int, stopped.groups())
        assert steps == 4000
        assert version > 1, "the actor never followed weights the learner trained"

        table = algorithm_config("dqn", FAST)
        with ReplayClient(replay_address, (tmp_path / "token").read_text().strip()) as client:
            info = client.info()["transitions"]
        assert info.inserted_items == sent > 0
        assert info.sampled_items >= table.batch_size

        learner.send_signal(signal.SIGTERM)
        assert learner.wait(timeout=60) == 0, (tmp_path / "learner.log").read_text()
        assert load_checkpoint(run_dir / "learner")["learner"]["updates"] > 0
    finally:
        for process, log in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            log.close()
