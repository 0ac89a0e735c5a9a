"""``shoal train --address`` on a real two-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head and a second node, each its own raylet; Ray 2.60's
token authentication on, as by default): the run joins the cluster, spreads its actors
over both nodes, binds its services to the node address instead of loopback, talks TLS
on every channel between them, trains, and stops cleanly on SIGTERM."""

import json
import os

import pytest

from .live import LIVE_TEST_TIMEOUT, START, LiveTrain
from .test_train_local import train_command


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_train_joins_a_two_node_cluster_and_spreads_actors(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    # Ray gives a starting GCS 30 s to publish its port; on a loaded 2-core machine (a CI
    # run, Ray's earlier sessions still tearing down) it once took longer.
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "120")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        cluster.add_node(num_cpus=3)
        cluster.wait_for_nodes()
        command = train_command(tmp_path, "--actors", "4", "--total-env-steps", "1000000000",
                                "--address", cluster.address, "--tls")
        with LiveTrain(tmp_path, command, env={**os.environ, "RAY_ADDRESS": ""}) as run:
            # Trained: the learner took batches the actors wrote, over TLS.
            run.wait_for(lambda: run.latest("placement")
                         and run.latest("throughput").get("updates", 0) > 0, START,
                         "the run to place its components and train")
            summary = run.stop()
            events = run.events()
    finally:
        cluster.shutdown()
    assert summary["env_steps"] > 0 and summary["updates"] > 0
    start = next(e for e in events if e["event"] == "start")
    assert start["launch"] == "ray" and start["host"] == "node"
    nodes = next(e for e in events if e["event"] == "placement")["nodes"]
    actor_nodes = {node for name, node in nodes.items() if name.startswith("actor-")}
    assert len(actor_nodes) == 2, nodes
    # Every process serves on its node's address, not loopback (the replay service and
    # the ParameterService bind the same host as their /metrics).
    targets = json.loads((tmp_path / "runs" / os.path.basename(summary["run_dir"])
                          / "prometheus_targets.json").read_text())
    assert all(not group["targets"][0].startswith("127.") for group in targets), targets
