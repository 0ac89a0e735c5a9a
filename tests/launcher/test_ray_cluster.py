"""``shoal train --address`` joining a Ray cluster started as a user starts one: real
``ray start`` processes on loopback, a head and a second node (two raylets on this
machine, each on ports of its own), with Ray's token authentication on because a token
exists in the HOME they start from, as ``ray start`` does after any local ``ray.init()``.

The run joins with no RAY_AUTH_MODE in its environment (it finds the token as Ray would),
places its components on both nodes, binds its services to the node address, talks TLS
between them and finishes its budget; a second run asked for more actors than the cluster
has CPUs goes on with the extra one pending; without the token, with a wrong one, or
asking for more than the cluster has, ``shoal train`` exits 2 with one line. The test
starts the cluster and stops it by the process ids it started, never by a ``ray stop``
that would end other clusters on this machine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.launcher.ray_cluster import ClusterRefused, Demand, check_fits, token_source

from .live import CONDITION, LIVE_TEST_TIMEOUT, START, STOP, LiveTrain
from .test_cli_hardening import one_error_line
from .test_train_local import train_command

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from ray_nodes import LocalCluster, alive_nodes, local_cluster

SHOAL = [sys.executable, "-m", "shoal.launcher.cli"]
CPUS_PER_NODE = 3  # two nodes: replay service, learner and 4 actors fill them


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("ray-cluster"), [CPUS_PER_NODE] * 2,
                       timeout=START) as running:
        yield running


@pytest.fixture
def idle(cluster: LocalCluster) -> LocalCluster:
    """The cluster with all its CPUs free: an earlier test's run has let go of them."""
    cluster.wait_idle(2 * CPUS_PER_NODE, timeout=CONDITION)
    return cluster


def test_the_cluster_under_test_has_token_authentication_on(cluster):
    assert "Token authentication is enabled for this Ray cluster" in \
        cluster.nodes[0].log.read_text()
    assert alive_nodes(cluster.address, "not-the-token") == 0  # refused


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_train_joins_with_the_token_of_its_home_and_finishes_its_budget(idle, tmp_path):
    cluster = idle
    command = train_command(tmp_path, "--actors", "4", "--total-env-steps", "4000",
                            "--address", cluster.address, "--tls")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=cluster.env(),
                            timeout=START + STOP)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]  # the budget ends it: no target
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 4000 and summary["updates"] > 0, summary
    run_dir = Path(summary["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["launch"] == "ray" and start["host"] == "node"
    nodes = next(e for e in events if e["event"] == "placement")["nodes"]
    actor_nodes = {node for name, node in nodes.items() if name.startswith("actor-")}
    assert len(actor_nodes) == 2, nodes
    # Every process serves on its node's address, not loopback (the replay service and
    # the ParameterService bind the same host as their /metrics).
    targets = json.loads((run_dir / "prometheus_targets.json").read_text())
    assert all(not group["targets"][0].startswith("127.") for group in targets), targets
    print(f"joined, trained {summary['env_steps']:,} env steps in {seconds:.1f} s")


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_an_actor_the_cluster_cannot_place_is_pending_and_blocks_nothing(idle, tmp_path):
    cluster = idle
    command = train_command(tmp_path, "--actors", "4", "--total-env-steps", "1000000000",
                            "--address", cluster.address)
    with LiveTrain(tmp_path, command, env=cluster.env()) as run:
        run.wait_training()
        run_dir = run.run_dir()
        scaled = subprocess.run([*SHOAL, "scale", str(run_dir), "--actors", "5"],
                                capture_output=True, text=True, timeout=STOP)
        assert scaled.returncode == 0, scaled.stderr
        assert "actors 4 -> 5 (1 pending" in scaled.stdout, scaled.stdout
        scale = run.latest("scale")
        assert scale["actors"] == 5 and scale["pending_actors"] == 1

        def since_scale() -> list[dict]:
            return [e for e in run.events("throughput") if e["time"] > scale["time"]]

        # The run goes on: its loop polls and trains with the pending actor waiting.
        run.wait_for(lambda: len(since_scale()) >= 2
                     and since_scale()[-1]["env_steps"] > since_scale()[0]["env_steps"],
                     CONDITION, "throughput to grow after the scale")
        assert all(e["pending_actors"] == 1 and e["actors"] == 5 for e in since_scale())
        back = subprocess.run([*SHOAL, "scale", str(run_dir), "--actors", "4"],
                              capture_output=True, text=True, timeout=STOP)
        assert back.returncode == 0 and "actors 5 -> 4 at" in back.stdout, back
        assert run.latest("scale")["pending_actors"] == 0
        summary = run.stop()
    assert summary["env_steps"] > since_scale()[-1]["env_steps"] - 1


@pytest.mark.parametrize(("home", "extra", "message"), [
    ("empty", {}, "has Ray's token authentication on and this machine has no token: set "
                  "RAY_AUTH_TOKEN"),
    ("cluster's", {"RAY_AUTH_TOKEN": "not-the-token"},
     "refuses the Ray token from RAY_AUTH_TOKEN"),
    ("cluster's", {"RAY_AUTH_MODE": "disabled"}, "and RAY_AUTH_MODE is 'disabled'"),
])
def test_train_without_the_clusters_token_exits_2_in_one_line(cluster, tmp_path, home, extra,
                                                              message):
    env = cluster.env(tmp_path if home == "empty" else None, **extra)
    started = time.monotonic()
    result = subprocess.run([*SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1",
                             "--address", cluster.address, "--run-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, env=env, timeout=STOP)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result.stderr)
    assert line.startswith(f"shoal: error: --address: {cluster.address} ") and message in line
    assert not (tmp_path / "runs").exists()
    print(f"{line} ({time.monotonic() - started:.1f} s)")


def test_train_asking_for_more_than_the_cluster_has_exits_2_in_one_line(idle, tmp_path):
    cluster = idle
    result = subprocess.run([*SHOAL, "train", "--algo", "dqn", "--env", "CartPole-v1",
                             "--actors", "5", "--address", cluster.address,
                             "--run-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, env=cluster.env(), timeout=STOP)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result.stderr)
    assert (f"the run asks Ray for 7 CPUs (replay service 1, learner 1, 5 actors x 1) and "
            f"the cluster at {cluster.address} has 6 CPUs on 2 nodes") in line, line
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------- the checks, without a cluster


def test_a_run_that_does_not_fit_the_free_cpus_is_refused_naming_both():
    check_fits(Demand(4), {"CPU": 6.0}, {"CPU": 6.0}, 2, "h:1")  # exactly fits
    with pytest.raises(ClusterRefused, match=re.escape(
            "asks Ray for 6 CPUs and 1 GPU (replay service 1, learner 1, 4 actors x 1) and "
            "the cluster at h:1 has 8 CPUs on 2 nodes, 5 of them free")):
        check_fits(Demand(4, learner_gpu=True), {"CPU": 8.0, "GPU": 1.0},
                   {"CPU": 5.0, "GPU": 1.0}, 2, "h:1")


def test_the_token_is_found_in_rays_order(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert token_source() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t\n")
    assert token_source() == str(tmp_path / ".ray" / "auth_token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterRefused, match="RAY_AUTH_TOKEN_PATH: cannot read"):
        token_source()  # Ray would abort the process on it
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    assert token_source() == "RAY_AUTH_TOKEN"
