"""Every component's /metrics, scraped over HTTP while a real (one-process) run goes."""

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.launcher.components import ActorComponent, LearnerComponent, ReplayComponent, Wiring
from shoal.launcher.prometheus_config import prometheus_config
from shoal.launcher.run_dir import (
    PROMETHEUS_TARGETS,
    TARGETS_INDEX,
    remove_from_targets_index,
    write_prometheus_targets,
)

from ..conftest import run_config, wait_until
from .live import CONDITION, LIVE_TEST_TIMEOUT, START
from .test_train_local import FAST

# The module's run starts with the first test that asks for it (in its time), and waits for
# its learner with a deadline sized for a loaded machine.
pytestmark = pytest.mark.timeout(LIVE_TEST_TIMEOUT)

EXPECTED = {
    "actor": ["shoal_actor_env_steps_total", "shoal_actor_episodes_total",
              "shoal_actor_episode_return_recent", "shoal_actor_inference_seconds_total",
              "shoal_actor_weights_version", "shoal_actor_items_sent_total",
              "shoal_actor_items_stored_total", "shoal_actor_items_lost_total",
              "shoal_actor_insert_blocked_seconds_total"],
    "replay": ["shoal_replay_items", "shoal_replay_stored_bytes", "shoal_replay_inserts_total",
               "shoal_replay_samples_total", "shoal_replay_priority_updates_total",
               "shoal_replay_rate_limiter_blocked_seconds_total"],
    "learner": ["shoal_learner_updates_total", "shoal_learner_samples_total",
                "shoal_learner_batch_wait_seconds_total", "shoal_learner_update_seconds_total",
                "shoal_learner_weights_published_total", "shoal_learner_device_info",
                "shoal_learner_loss", "shoal_learner_policy_lag_versions_bucket",
                "shoal_learner_policy_lag_versions_count",
                "shoal_learner_priority_updates_dropped_total"],
}
INCREASING = ["shoal_actor_env_steps_total", "shoal_actor_items_sent_total",
              "shoal_replay_inserts_total", "shoal_replay_samples_total",
              "shoal_learner_updates_total", "shoal_learner_policy_lag_versions_count"]


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """Every sample of one endpoint: (name, sorted labels) -> value."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples: dict, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@pytest.fixture(scope="module")
def running():
    """Replay service, learner and one actor in this process, wired as ``shoal train``
    wires them; yields their metrics addresses while they run."""
    config = run_config(algorithm=FAST, learner={"checkpoint_every": 10**9},
                        collection={"envs_per_actor": 4}, run={"actors": 1})
    wiring = Wiring("t", run="metrics-test")
    replay = ReplayComponent(config.table, config.replay, wiring, None)
    learner = LearnerComponent(config, wiring, replay.address(), "/tmp/unused-run", None)
    actor = ActorComponent(config, wiring, 0, 1, replay.address(), learner.address())
    addresses = {"replay": replay.metrics_address(), "learner": learner.metrics_address(),
                 "actor": actor.metrics_address()}
    try:
        wait_until(lambda: total(scrape(addresses["learner"]),
                                 "shoal_learner_updates_total") > 20,
                   timeout=START, what="the learner to update", interval=0.1)
        yield addresses
    finally:
        actor.request_stop()
        learner.stop(checkpoint=False)
        replay.stop()
        actor.stop()


@pytest.mark.parametrize("component", sorted(EXPECTED))
def test_every_metric_exists_with_run_and_instance_labels(running, component):
    samples = scrape(running[component])
    names = {name for name, _ in samples}
    missing = [name for name in EXPECTED[component] if name not in names]
    assert not missing, f"{component} lacks {missing}"
    for (name, labels), _ in samples.items():
        if name.startswith("shoal_"):
            assert {"run": "metrics-test"}.items() <= dict(labels).items(), name
            assert dict(labels)["instance"] in {"replay", "learner", "actor-0"}, name


def test_counters_only_increase_and_the_busy_ones_do(running):
    before = {c: scrape(address) for c, address in running.items()}
    wait_until(lambda: total(scrape(running["learner"]), "shoal_learner_updates_total")
               > total(before["learner"], "shoal_learner_updates_total") + 20,
               timeout=CONDITION, what="more updates", interval=0.1)
    after = {c: scrape(address) for c, address in running.items()}
    for component in running:
        for key, value in before[component].items():
            name = key[0]
            if name.endswith(("_total", "_count", "_bucket", "_sum")):
                assert after[component][key] >= value, key
    for name in INCREASING:
        component = name.split("_")[1]
        assert total(after[component], name) > total(before[component], name), name
    learner = after["learner"]
    assert total(learner, "shoal_learner_device_info") == 1
    assert total(after["replay"], "shoal_replay_items") > 0


def test_policy_lag_histogram_counts_every_sampled_item(running):
    learner = scrape(running["learner"])
    count = total(learner, "shoal_learner_policy_lag_versions_count")
    # the lag of a batch is counted as it arrives, its samples once its update is done
    assert 0 <= count - total(learner, "shoal_learner_samples_total") <= FAST["batch_size"]
    assert count > 0
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value
                     in learner.items() if name == "shoal_learner_policy_lag_versions_bucket")
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    assert buckets[-1] == (float("inf"), count)


def test_targets_file_is_prometheus_file_sd_in_the_run_and_in_the_index(tmp_path):
    run_dir = tmp_path / "run-a"
    run_dir.mkdir()
    write_prometheus_targets(run_dir, "run-a", {"replay": "127.0.0.1:1",
                                                "actor-0": "127.0.0.1:2"})
    groups = json.loads((run_dir / PROMETHEUS_TARGETS).read_text())
    indexed = tmp_path / TARGETS_INDEX / "run-a.json"
    assert json.loads(indexed.read_text()) == groups
    remove_from_targets_index(run_dir)
    assert not indexed.exists() and (run_dir / PROMETHEUS_TARGETS).exists()
    assert groups == [
        {"targets": ["127.0.0.1:1"],
         "labels": {"run": "run-a", "component": "replay", "shoal_instance": "replay"}},
        {"targets": ["127.0.0.1:2"],
         "labels": {"run": "run-a", "component": "actor", "shoal_instance": "actor-0"}}]


def test_every_dashboard_panel_queries_metrics_shoal_exports(running):
    """No Grafana server here: the dashboard is checked against live /metrics instead."""
    import re
    from pathlib import Path

    exported = {name for address in running.values() for name, _ in scrape(address)}
    dashboard = json.loads((Path(__file__).resolve().parents[2]
                            / "deploy/grafana/shoal-dashboard.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        expressions = [target["expr"] for target in panel["targets"]]
        assert expressions, panel["title"]
        for expression in expressions:
            assert expression.count("(") == expression.count(")"), expression
            names = re.findall(r"\bshoal_[a-z_]+", expression)
            assert names, expression
            unknown = [name for name in names if name not in exported]
            assert not unknown, f"{panel['title']}: {unknown} not exported"
            assert 'run=~"$run"' in expression, expression  # the run picker applies
            # several runs picked: one series per run, named so, never a sum across them
            assert not re.search(r"\b(?:sum|avg|max|min)\s*\(", expression), expression
            for grouping in re.findall(r"\bby \(([^)]*)\)", expression):
                assert "run" in grouping.replace(" ", "").split(","), expression
        assert all("{{run}}" in target["legendFormat"] for target in panel["targets"]), panel
        # one unit on each axis: items apart from bytes, rates apart from versions
        for apart in (("shoal_replay_items", "shoal_replay_stored_bytes"),
                      ("shoal_learner_weights_published_total", "shoal_actor_weights_version")):
            assert not all(any(name in e for e in expressions) for name in apart), panel["title"]
    blocked = next(p for p in dashboard["panels"] if p["title"] == "Actors blocked on insert")
    assert all("rate_limiter" not in t["expr"] or 'side="insert"' in t["expr"]
               for t in blocked["targets"])  # the sample side is the learner waiting
    query = dashboard["templating"]["list"][1]["query"]["query"]
    assert re.findall(r"shoal_[a-z_]+", query)[0] in exported


def test_deploy_configs_parse_and_point_at_each_other():
    from pathlib import Path

    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    prometheus = yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())
    # the shipped config is prometheus_config's for ./runs, relative to itself: written once
    assert prometheus == prometheus_config(["../../runs"])
    shoal_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "shoal")
    assert shoal_job["honor_labels"] is True
    assert shoal_job["file_sd_configs"][0]["files"] == [
        f"../../runs/{TARGETS_INDEX}/*.json"]
    datasource = yaml.safe_load(
        (deploy / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load(
        (deploy / "grafana/provisioning/dashboards/shoal.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/shoal"
