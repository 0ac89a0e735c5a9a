"""The ``shoal`` command's hardening: config values checked against the algorithm's config
types before anything is created, one-line YAML errors with their position, a Ray address
that answers as nothing (or as something else) refused in seconds, help that lists the
registry, one seed for every process of a run, and component tracebacks in the event log."""

import dataclasses
import http.server
import json
import logging
import os
import socketserver
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from shoal.actors.envs import probe_spec
from shoal.algorithms.dqn import DQNConfig
from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.cli import main
from shoal.launcher.components import LearnerComponent, ReplayComponent, Wiring, _Background
from shoal.launcher.exit_codes import TRAIN_EXIT_CODES
from shoal.launcher.launch import LocalLaunch
from shoal.launcher.run_dir import EventLog, read_events, write_config
from shoal.learner.checkpoint import load_checkpoint
from shoal.replay_service.config import table_from_dict
from shoal.replay_service.table import Table

from ..conftest import run_config, wait_until
from .test_train_local import FAST

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]


def shoal(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """Runs the command as a user does; returns its result and how long it took."""
    started = time.monotonic()
    result = subprocess.run([*SHOAL, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "RAY_ADDRESS": ""})
    return result, time.monotonic() - started


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("shoal: error: ") and "Traceback" not in stderr
    return lines[0]


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in this process: for commands that fail or print and end (tables,
    --help), never for one that would start a run."""
    with pytest.raises(SystemExit) as ended:
        main(list(args))
    captured = capsys.readouterr()
    code = ended.value.code
    assert isinstance(code, int)
    return code, captured.out, captured.err


# ------------------------------------------------------------------ config values (6)


@pytest.mark.parametrize(("algo", "env", "text", "message"), [
    ("dqn", "CartPole-v1", "learning_rate: fast",
     "--config: learning_rate: expected a float, got 'fast'"),
    ("dqn", "CartPole-v1", "batch_size: 6.5", "--config: batch_size: expected an int, got 6.5"),
    ("dqn", "CartPole-v1", "batch_size: true", "--config: batch_size: expected an int, got True"),
    ("dqn", "CartPole-v1", "gamma: null", "--config: gamma: expected a float, got None"),
    ("dqn", "CartPole-v1", "hidden: [64, wide]",
     "--config: hidden: expected a list of int, got [64, 'wide']"),
    ("dqn", "CartPole-v1", "hidden: 64", "--config: hidden: expected a list of int, got 64"),
    ("dqn", "CartPole-v1", "learnin_rate: 0.1",
     "--config: unknown key 'learnin_rate' (did you mean 'learning_rate'?)"),
    ("dqn", "CartPole-v1", "learning_rate: -1.0", "--config: dqn's learner refuses"),
    ("ppo", "CartPole-v1", "normalize_advantages: 1",
     "--config: normalize_advantages: expected a bool (true or false), got 1"),
    ("ppo", "CartPole-v1", "collection: {max_policy_lag: two}",
     "--config: collection.max_policy_lag: expected an int or None, got 'two'"),
    ("ppo", "CartPole-v1", "run: {actors: 2, sactors: 3}",
     "--config: run: unknown key 'sactors' (did you mean 'actors'?)"),
    ("dqn", "CartPole-v1", "algorithm: {gamma: high}",
     "--config: algorithm.gamma: expected a float, got 'high'"),
    ("dqn", "CartPole-v1", "algorithm: {gamma: 0.9}\nbatch_size: 3",
     "--config: unknown key 'batch_size'; the run configuration has"),
    ("ppo", "CartPole-v1", "objective: steepest", "--config: objective: expected one of"),
    ("a2c", "CartPole-v1", "optimizer: 3", "--config: optimizer: expected a str, got 3"),
    ("sac", "Pendulum-v1", "tau: 2", "--config: tau: expected in (0, 1], got 2"),
    ("sac", "Pendulum-v1", "target_entropy: low",
     "--config: target_entropy: expected a float or None, got 'low'"),
])
def test_config_values_are_checked_against_the_config_types(tmp_path, capsys, algo, env,
                                                            text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text + "\n")
    code, out, err = run_in_process(capsys, "tables", "--algo", algo, "--env", env,
                                    "--config", str(config))
    assert code == 2, out + err
    assert message in one_error_line(err)


def test_config_values_are_converted_as_the_dataclass_holds_them(tmp_path, capsys):
    """YAML has no tuples, and PyYAML reads 1e-3 (no dot) as a string: both arrive as the
    config types say; an int is a float."""
    config = tmp_path / "good.yaml"
    config.write_text("learning_rate: 1e-3\nmax_grad_norm: 5\nhidden: [32, 32]\n"
                      "n_step: 2\nbuffer_size: 5000\n")
    code, out, err = run_in_process(capsys, "tables", "--algo", "dqn", "--env", "CartPole-v1",
                                    "--config", str(config))
    assert code == 0, err
    assert yaml.safe_load(out)["tables"][0]["max_size"] == 5000


def test_train_with_a_badly_typed_value_creates_no_run_directory(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rate: fast\n")
    result, _ = shoal("train", "--local", "--algo", "dqn", "--env", "CartPole-v1",
                      "--config", str(config), "--run-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert "learning_rate: expected a float, got 'fast'" in one_error_line(result.stderr)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ malformed YAML (7)

MALFORMED = "gamma: 0.9\nhidden: [64, 64\nbatch_size: 32\n"
WHERE = "line 3, column 11: expected ',' or ']', but got ':'"


def test_malformed_train_config_is_one_line_with_its_position(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(MALFORMED)
    result, _ = shoal("train", "--local", "--algo", "dqn", "--env", "CartPole-v1",
                      "--config", str(config), "--run-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert f"--config: {config} is not valid YAML at {WHERE}" in line, line
    assert not (tmp_path / "runs").exists()


def test_malformed_replay_server_config_is_one_line_with_its_position(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(MALFORMED)
    result, _ = shoal("replay-server", "--config", str(config),
                      "--token-file", str(tmp_path / "token"))
    assert result.returncode == 2
    assert f"--config: {config} is not valid YAML at {WHERE}" in one_error_line(result.stderr)


# ------------------------------------------------------------ a Ray address that is not (8)


class _Silent(socketserver.ThreadingTCPServer):
    """Accepts connections and says nothing until closed."""

    daemon_threads = True

    def __init__(self) -> None:
        self.closing = threading.Event()
        closing = self.closing

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                closing.wait(60)

        super().__init__(("127.0.0.1", 0), Handler)


def _serving(server: socketserver.TCPServer):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def _free_port() -> int:
    """A port nothing listens on: bound, then released (nothing else binds it this soon)."""
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as server:
        return server.server_address[1]


@pytest.fixture(params=["nothing", "silent", "http"])
def not_a_cluster(request):
    """An address of each kind that is not a Ray cluster, and the words that say so."""
    if request.param == "nothing":
        port = _free_port()
        yield f"127.0.0.1:{port}", f"nothing answers at 127.0.0.1:{port}"
        return
    if request.param == "silent":
        server: socketserver.TCPServer = _Silent()
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 http.server.BaseHTTPRequestHandler)
    thread = _serving(server)
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield address, f"{address} answers, but not as a Ray cluster"
    finally:
        if isinstance(server, _Silent):
            server.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_train_refuses_an_address_that_is_not_a_ray_cluster_in_seconds(tmp_path, not_a_cluster):
    address, message = not_a_cluster
    result, seconds = shoal("train", "--algo", "dqn", "--env", "CartPole-v1",
                            "--address", address, "--run-dir", str(tmp_path / "runs"),
                            timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"--address: {message}" in one_error_line(result.stderr)
    assert seconds < 15
    assert not (tmp_path / "runs").exists()


# -------------------------------------------------------------- help and seeds (9)


def option_help(help_text: str, option: str) -> str:
    """The help of ``option`` (e.g. ``--seed SEED``) in an argparse help text, one line."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option))
    words = [lines[start].strip()[len(option):]]
    for line in lines[start + 1:]:
        if line.lstrip().startswith("-") or not line.strip():
            break
        words.append(line)
    return " ".join(" ".join(words).split())


@pytest.mark.parametrize("command", ["train", "tables", "learner", "actor"])
def test_algo_help_lists_the_registry(capsys, command):
    code, out, _ = run_in_process(capsys, command, "--help")
    assert code == 0
    algo_help = option_help(out, "--algo ALGO")
    assert all(name in algo_help for name in ALGORITHMS), algo_help


@pytest.mark.parametrize("command", ["train", "learner", "actor", "tables"])
def test_seed_has_help(capsys, command):
    code, out, _ = run_in_process(capsys, command, "--help")
    assert code == 0
    seed_help = option_help(out, "--seed SEED")
    assert "learner" in seed_help and "replay" in seed_help, seed_help


def test_train_help_lists_every_exit_code_and_the_readme_repeats_them(capsys):
    code, out, _ = run_in_process(capsys, "train", "--help")
    assert code == 0
    listed = out[out.index("exit codes:"):]
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for exit_code, meaning in TRAIN_EXIT_CODES.items():
        assert f"{exit_code:>3}  {meaning}" in listed, listed
        assert f"| {exit_code} |" in readme, f"the README's table lacks exit code {exit_code}"


def test_algos_lists_each_algorithm_its_action_spaces_and_table(capsys):
    code, out, _ = run_in_process(capsys, "algos")
    assert code == 0
    blocks = out.split("\n")
    for name, definition in ALGORITHMS.items():
        start = blocks.index(name)
        described = "\n".join(blocks[start:start + 8])
        assert f"actions: {' or '.join(sorted(definition.action_spaces))}" in described
        assert f"actors collect {definition.experience.value}" in described
        table = "'transitions'" if definition.experience.value == "transitions" else "'rollouts'"
        assert f"table {table}" in described, described
    assert "shoal config --algo NAME" in blocks[-2]


def test_version_names_the_installed_package(capsys):
    code, out, _ = run_in_process(capsys, "--version")
    assert code == 0 and out.strip() == f"shoal {version('shoal')}"


# --------------------------------------------------------------------------- resume


def finished_run(tmp_path: Path, algo: str) -> Path:
    """A run directory as ``shoal train`` leaves it, as far as --resume reads it before
    anything starts: its config.json and a learner checkpoint."""
    run = tmp_path / f"{algo}-run"
    (run / "learner").mkdir(parents=True)
    (run / "learner" / "learner.pt").write_bytes(b"")
    write_config(run, run_config(algo).to_dict())
    return run


def test_resume_takes_the_runs_own_configuration_and_the_flags_given_now(capsys, tmp_path):
    run = finished_run(tmp_path, "ppo")
    code, out, _ = run_in_process(capsys, "train", "--resume", str(run),
                                  "--total-env-steps", "5000", "--print-config")
    assert code == 0
    assert out.splitlines()[0] == f"# settings: the run's own ({run / 'config.json'})"
    tree = yaml.safe_load(out)
    assert (tree["algo"], tree["env"], tree["run"]["total_env_steps"]) == (
        "ppo", "CartPole-v1", 5000)
    assert tree["algorithm"] == json.loads((run / "config.json").read_text())["algorithm"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--algo", "dqn"], "--algo: the run in {run} trains algo ppo; --resume continues it as "
                        "it was (leave --algo out)"),
    (["--env", "Acrobot-v1"], "--env: the run in {run} trains env CartPole-v1"),
    (["--config", "other.yaml"], "--config: --resume continues the run with its own "
                                 "configuration"),
    (["--envs-per-actor", "2"], "--envs-per-actor: change the replay table the run's "
                                "checkpoint holds ('rollouts'"),
])
def test_resume_refuses_what_its_checkpoint_could_not_continue(capsys, tmp_path, extra,
                                                               message):
    run = finished_run(tmp_path, "ppo")
    code, _, err = run_in_process(capsys, "train", "--resume", str(run), *extra)
    assert code == 2
    assert message.format(run=run) in one_error_line(err)


def test_seed_must_be_a_numpy_seed(capsys):
    code, _, err = run_in_process(capsys, "tables", "--algo", "dqn", "--env", "CartPole-v1",
                                  "--seed", "-1")
    assert code == 2
    assert "--seed: expected 0..4294967295, got -1" in one_error_line(err)


def _sampled_keys(seed: int) -> np.ndarray:
    """Keys a table built from the run's table config draws, after the same inserts."""
    config = run_config(seed=seed, algorithm={"buffer_size": 1_000, "min_size_to_sample": 100,
                                              "samples_per_insert": 8.0,
                                              "error_buffer": 8 * 2048})
    table = Table.from_spec(config.table)
    items = {name: np.zeros((500, *spec.shape), spec.dtype)
             for name, spec in table.signature.items()}
    table.insert(items)
    return table.sample(64, timeout=5).keys


def test_the_run_seed_reaches_the_replay_table():
    assert np.array_equal(_sampled_keys(7), _sampled_keys(7))
    assert not np.array_equal(_sampled_keys(7), _sampled_keys(8))


def test_tables_prints_the_seed_the_replay_server_uses(capsys):
    code, out, err = run_in_process(capsys, "tables", "--algo", "dqn", "--env", "CartPole-v1",
                                    "--seed", "11")
    assert code == 0, err
    entry = yaml.safe_load(out)["tables"][0]
    assert entry["seed"] == 11
    table_from_dict(entry)  # and the replay server takes it


def _initial_weights(seed: int) -> dict[str, torch.Tensor]:
    """What a learner seeded with ``seed`` starts from, built here as the learner does."""
    torch.manual_seed(seed)
    config = DQNConfig(**FAST)
    learner = ALGORITHMS["dqn"].make_learner(config, probe_spec("CartPole-v1"),
                                             torch.device("cpu"))
    return learner.state_dict()["online"]


def test_the_run_seed_reaches_the_learner(tmp_path):
    """A --local run that cannot update (the table holds fewer than min_size_to_sample items
    when the step budget ends it) checkpoints the learner's initial weights: those of a
    learner seeded with the run's seed."""
    config = tmp_path / "fast.yaml"
    config.write_text(json.dumps({**FAST, "min_size_to_sample": 50_000, "buffer_size": 50_000}))
    result, _ = shoal("train", "--local", "--algo", "dqn", "--env", "CartPole-v1",
                      "--config", str(config), "--actors", "1", "--envs-per-actor", "2",
                      "--total-env-steps", "100", "--seed", "5",
                      "--run-dir", str(tmp_path / "runs"), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]  # the step budget ended it
    run_dir = next((tmp_path / "runs").glob("dqn-*"))
    saved = load_checkpoint(run_dir / "learner")
    assert saved["learner"]["updates"] == 0
    online = saved["learner"]["online"]
    for seed, same in ((5, True), (6, False)):
        expected = _initial_weights(seed)
        assert all(torch.equal(online[k], expected[k]) for k in expected) == same, seed


# ------------------------------------------------------------ component tracebacks


def test_a_dying_component_thread_keeps_and_logs_its_traceback(caplog):
    def doomed(stop: threading.Event) -> None:
        raise ValueError("the replay service said no")

    with caplog.at_level(logging.ERROR, logger="shoal.launcher.components"):
        background = _Background("doomed", doomed)
        background.thread.join(10)
    assert not background.thread.is_alive()
    assert background.error == "ValueError: the replay service said no"
    assert background.traceback is not None
    assert 'raise ValueError("the replay service said no")' in background.traceback
    logged = [r for r in caplog.records if r.exc_info and "doomed" in r.getMessage()]
    assert logged, caplog.records


def test_the_failure_event_holds_the_component_traceback(tmp_path):
    """A learner sampling a table the replay service does not have dies in its thread; the
    run's failure event carries that thread's traceback, not only its one-line error."""
    from shoal.launcher.training import write_failure

    config = run_config(algorithm=FAST, collection={"envs_per_actor": 2})
    wiring = Wiring("a-run-token")
    # the replay service's table is not the one the learner samples
    replay = ReplayComponent(dataclasses.replace(config.table, name="another-table"),
                             config.replay, wiring, None)
    learner = LearnerComponent(config, wiring, replay.address(), str(tmp_path), None)
    try:
        wait_until(lambda: learner.poll(0)["error"] is not None, timeout=60,
                   what="the learner's thread to fail")
        with EventLog(tmp_path / "events.jsonl") as events:
            write_failure(events, RuntimeError(f"learner failed: {learner.poll(0)['error']}"),
                          LocalLaunch.call, {"learner": learner})
    finally:
        learner.stop(checkpoint=False)
        replay.stop()
    [failed] = read_events(tmp_path / "events.jsonl", "failed")
    assert failed["error"].startswith("RuntimeError: learner failed: ")
    component = failed["components"]["learner"]
    assert component["error"] == learner.poll(0)["error"]
    assert component["traceback"].startswith("Traceback (most recent call last)")
    assert "NOT_FOUND" in component["traceback"] and "learner.py" in component["traceback"]
