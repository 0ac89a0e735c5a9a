"""The autoscaler's rule and its timing, on scrapes built by hand (the real run is in
``benchmarks/autoscale.py``), and the launcher's metrics of it."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.launcher.autoscale import Autoscaler, AutoscaleRange
from shoal.launcher.metrics import LauncherCollector
from shoal.launcher.rates import Rates, scrape
from shoal.protos.exposition import MetricsServer


def rates(busy: float, waiting: float, blocked: float) -> Rates:
    return Rates(seconds=10.0, env_steps_per_s={"actor-0": 1000.0}, inserts_per_s=1000.0,
                 samples_per_s=8000.0, updates_per_s=125.0, learner_busy=busy,
                 learner_waiting=waiting, actors_blocked=blocked, policy_lag=1.0,
                 recent_return=None)


def samples(seconds: float, busy: float, waiting: float, blocked: float) -> dict:
    """Counters after ``seconds`` at the given shares of time."""
    return {("shoal_learner_update_seconds_total", "learner"): busy * seconds,
            ("shoal_learner_batch_wait_seconds_total", "learner"): waiting * seconds,
            ("shoal_actor_insert_blocked_seconds_total", "actor-0"): blocked * seconds,
            ("shoal_actor_env_steps_total", "actor-0"): 1000.0 * seconds}


@pytest.mark.parametrize(("busy", "waiting", "blocked", "actors", "expected", "why"), [
    (0.5, 0.45, 0.0, 2, 3, "the learner waited 45%"),    # the learner starves: one more
    (0.5, 0.45, 0.0, 4, 4, "but 4 is MAX"),              # ... but not past MAX
    (0.95, 0.02, 0.8, 3, 2, "actors sat blocked on insert 80%"),  # actors queue: one fewer
    (0.95, 0.02, 0.8, 1, 1, "but 1 is MIN"),             # ... but not below MIN
    (0.93, 0.05, 0.1, 2, 2, "balanced"),
    (0.5, 0.45, 0.7, 2, 2, "both sides wait"),           # round trips, not the count: hold
])
def test_rule_decides_every_window_and_says_why(busy, waiting, blocked, actors, expected, why):
    decision = Autoscaler(AutoscaleRange(1, 4)).decide(rates(busy, waiting, blocked), actors)
    assert (decision.previous, decision.actors) == (actors, expected)
    assert decision.changed == (expected != actors)
    assert why in decision.reason
    assert decision.figures["learner_busy"] == busy
    assert decision.figures["actors_blocked"] == blocked


def test_decides_once_per_window_and_settles_after_a_change():
    scaler = Autoscaler(AutoscaleRange(1, 8), window_seconds=10, settle_seconds=20)
    assert scaler.observe(0.0, samples(0, 0.5, 0.45, 0), actors=1) is None  # opens a window
    assert scaler.observe(5.0, samples(5, 0.5, 0.45, 0), actors=1) is None  # too soon
    decision = scaler.observe(10.0, samples(10, 0.5, 0.45, 0), actors=1)
    assert decision is not None and decision.actors == 2
    assert decision.figures["window_seconds"] == 10.0
    assert scaler.decisions == {"up": 1, "down": 0}
    # settling: nothing until t = 30, then a fresh window of 10 s
    assert scaler.observe(25.0, samples(25, 0.5, 0.45, 0), actors=2) is None
    assert scaler.observe(30.0, samples(30, 0.5, 0.45, 0), actors=2) is None
    assert scaler.observe(39.0, samples(39, 0.5, 0.45, 0), actors=2) is None
    assert scaler.observe(40.0, samples(40, 0.5, 0.45, 0), actors=2).actors == 3


@pytest.mark.parametrize(("text", "problem"), [
    ("4", "expected MIN:MAX"), ("a:b", "expected MIN:MAX"), ("0:3", "1 <= MIN <= MAX"),
    ("5:2", "1 <= MIN <= MAX")])
def test_range_parsing_names_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        AutoscaleRange.parse(text)
    assert AutoscaleRange.parse("2:6") == AutoscaleRange(2, 6)
    assert str(AutoscaleRange(2, 6)) == "2:6"


def test_launcher_exports_the_actor_count_and_decisions():
    scaler = Autoscaler(AutoscaleRange(1, 8), window_seconds=1, settle_seconds=0)
    scaler.observe(0.0, samples(0, 0.5, 0.45, 0), actors=1)
    scaler.observe(1.0, samples(1, 0.5, 0.45, 0), actors=1)
    server = MetricsServer(LauncherCollector(lambda: 2, lambda: scaler.decisions, "run-x"))
    try:
        scraped = scrape({"launcher": server.address})
        with urllib.request.urlopen(f"http://{server.address}/metrics") as page:
            families = {f.name: f for f in text_string_to_metric_families(page.read().decode())}
    finally:
        server.close()
    assert scraped[("shoal_launcher_actors", "launcher")] == 2
    decisions = {s.labels["direction"]: s.value
                 for s in families["shoal_autoscale_decisions"].samples
                 if s.name.endswith("_total")}
    assert decisions == {"up": 1.0, "down": 0.0}
