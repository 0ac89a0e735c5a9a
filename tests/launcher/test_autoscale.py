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


def samples(seconds: float, busy: float, waiting: float, blocked: float,
            actors: int = 1) -> dict:
    """Counters after ``seconds`` at the given shares of time, 1,000 env steps/s an actor."""
    return {("shoal_learner_update_seconds_total", "learner"): busy * seconds,
            ("shoal_learner_batch_wait_seconds_total", "learner"): waiting * seconds,
            ("shoal_actor_insert_blocked_seconds_total", "actor-0"): blocked * seconds,
            **{("shoal_actor_env_steps_total", f"actor-{index}"): 1000.0 * seconds
               for index in range(actors)}}


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
    assert scaler.observe(25.0, samples(25, 0.5, 0.45, 0, 2), actors=2) is None
    assert scaler.observe(30.0, samples(30, 0.5, 0.45, 0, 2), actors=2) is None
    assert scaler.observe(39.0, samples(39, 0.5, 0.45, 0, 2), actors=2) is None
    assert scaler.observe(40.0, samples(40, 0.5, 0.45, 0, 2), actors=2).actors == 3


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


def window(env_steps: float, updates: float, busy: float) -> Rates:
    return Rates(seconds=10.0, env_steps_per_s={"actor-0": env_steps}, inserts_per_s=env_steps,
                 samples_per_s=8 * env_steps, updates_per_s=updates, learner_busy=busy,
                 learner_waiting=1.0 - busy - 0.02, actors_blocked=0.0, policy_lag=1.0,
                 recent_return=None)


def test_an_addition_that_did_not_raise_throughput_is_undone_and_not_tried_again():
    # benchmarks/steer_run.py autoscale --scenario starved on 2 cores, before this rule:
    # 1 -> 4 actors at 8,280, 11,068, 10,703 and 10,240 env steps/s, the learner still
    # waiting at every count
    scaler = Autoscaler(AutoscaleRange(1, 4))
    first = scaler.decide(window(8_280, 26.0, 0.20), 1)
    assert first.actors == 2 and "the learner waited" in first.reason
    second = scaler.decide(window(11_068, 34.6, 0.43), 2)
    assert second.actors == 3                       # +34 %: the second actor paid
    third = scaler.decide(window(10_703, 33.4, 0.50), 3)
    assert third.actors == 2                        # -3 %: undone
    assert "3 actors gave 10,703 env steps/s" in third.reason
    assert "back to 2, the most that helps" in third.reason
    assert third.figures["env_steps_change"] == round(10_703 / 11_068 - 1, 3)
    kept = scaler.decide(window(11_100, 34.7, 0.44), 2)
    assert kept.actors == 2 and "2 is the most that helped" in kept.reason
    assert scaler.decide(window(11_000, 34.4, 0.43), 2).actors == 2   # and stays


def test_a_removal_that_cost_throughput_is_undone():
    scaler = Autoscaler(AutoscaleRange(1, 4))
    crowded = Rates(seconds=10.0, env_steps_per_s={"actor-0": 9_000.0}, inserts_per_s=9e3,
                    samples_per_s=7e4, updates_per_s=30.0, learner_busy=0.95,
                    learner_waiting=0.02, actors_blocked=0.8, policy_lag=1.0,
                    recent_return=None)
    assert scaler.decide(crowded, 3).actors == 2
    fewer = scaler.decide(window(7_000, 23.0, 0.70), 2)
    assert fewer.actors == 3 and "back to 3" in fewer.reason
    assert "but 3 is the fewest that kept pace" in scaler.decide(crowded, 3).reason



def test_an_addition_past_the_cpus_says_so_and_stands_only_if_it_pays():
    scaler = Autoscaler(AutoscaleRange(1, 4), cores=2)
    first = scaler.decide(window(8_000, 26.0, 0.20), 1)
    assert first.actors == 2 and first.figures["cores"] == 2
    assert "more processes than the 2 CPUs: kept only if it pays" in first.reason
    assert scaler.decide(window(8_100, 26.2, 0.21), 2).actors == 1   # +1 %: undone
    roomy = Autoscaler(AutoscaleRange(1, 4), cores=16).decide(window(8_000, 26.0, 0.2), 1)
    assert roomy.actors == 2 and "CPUs" not in roomy.reason
