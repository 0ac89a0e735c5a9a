"""Prometheus metrics of every component, read from the stats the components keep anyway.

Collectors run at scrape time, so the step loop and the update pay nothing for them: an
actor counts its steps in ``ActorStats`` whether or not anyone scrapes. Names follow
Prometheus conventions, ``shoal_<component>_<what>_<unit>`` (counters end in ``_total``,
times are seconds); every series carries ``run`` (the run directory's name) and
``instance`` (``actor-0``, ``learner``, ``replay``), never an unbounded value.

Each component serves its own registry on its own port (``MetricsServer``), so a run's
processes are scraped alike whether they are Ray actors, plain processes or threads of one
``--local`` process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector


class _Family:
    """Builds metric families that all carry the run and instance labels."""

    def __init__(self, run: str, instance: str) -> None:
        self.values = [run, instance]

    def counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=["run", "instance"])
        family.add_metric(self.values, value)
        return family

    def gauge(self, name: str, doc: str, value: float,
              extra: dict[str, str] | None = None) -> GaugeMetricFamily:
        extra = extra or {}
        family = GaugeMetricFamily(name, doc, labels=["run", "instance", *extra])
        family.add_metric([*self.values, *extra.values()], value)
        return family


class ActorCollector(Collector):
    def __init__(self, stats: Any, run: str, instance: str) -> None:
        self._stats = stats
        self._family = _Family(run, instance)

    def collect(self) -> Iterator[Metric]:
        stats, f = self._stats, self._family
        yield f.counter("shoal_actor_env_steps", "Env steps taken.", stats.env_steps)
        yield f.counter("shoal_actor_episodes", "Episodes finished.", stats.episodes)
        yield f.gauge("shoal_actor_episode_return_recent",
                      "Mean return of the actor's last 20 episodes.",
                      stats.recent_return if stats.recent_return is not None else float("nan"))
        yield f.counter("shoal_actor_inference_seconds",
                        "Time in the policy's forward pass (rate / env steps rate = per step).",
                        stats.inference_seconds)
        yield f.gauge("shoal_actor_weights_version", "Weight version the policy acts with.",
                      stats.version)
        yield f.counter("shoal_actor_items_sent", "Items written to the replay service.",
                        stats.items_sent)
        yield f.counter("shoal_actor_items_stored",
                        "Items the replay service acknowledged as stored (acknowledgements "
                        "are read when the writer needs room: up to its in-flight bound "
                        "behind items_sent, all of them once it closed).", stats.items_stored)
        yield f.counter("shoal_actor_items_lost",
                        "Items unacknowledged when the replay service went away.",
                        stats.items_lost)
        yield f.counter("shoal_actor_insert_blocked_seconds",
                        "Time waiting for the replay service to accept items.",
                        stats.insert_blocked_seconds)


class ReplayCollector(Collector):
    def __init__(self, tables: Callable[[], list[Any]], run: str, instance: str) -> None:
        self._tables = tables  # -> TableStats of every table, read at scrape time
        self._run, self._instance = run, instance

    def collect(self) -> Iterator[Metric]:
        labels = ["run", "instance", "table"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "items": GaugeMetricFamily("shoal_replay_items", "Items stored.", labels=labels),
            "bytes": GaugeMetricFamily("shoal_replay_stored_bytes",
                                       "Bytes of item data stored (compressed where it is).",
                                       labels=labels),
            "inserts": CounterMetricFamily("shoal_replay_inserts", "Items inserted.",
                                           labels=labels),
            "samples": CounterMetricFamily("shoal_replay_samples", "Items sampled.",
                                           labels=labels),
            "updates": CounterMetricFamily("shoal_replay_priority_updates",
                                           "Priorities updated.", labels=labels),
            "blocked": CounterMetricFamily(
                "shoal_replay_rate_limiter_blocked_seconds",
                "Time callers waited on the rate limiter, by side (insert or sample).",
                labels=[*labels, "side"]),
        }
        for table in self._tables():
            values = [self._run, self._instance, table.name]
            families["items"].add_metric(values, table.size)
            families["bytes"].add_metric(values, table.stored_bytes)
            families["inserts"].add_metric(values, table.inserted_items)
            families["samples"].add_metric(values, table.sampled_items)
            families["updates"].add_metric(values, table.priority_updates)
            families["blocked"].add_metric([*values, "insert"], table.insert_blocked_seconds)
            families["blocked"].add_metric([*values, "sample"], table.sample_blocked_seconds)
        yield from families.values()


class LearnerCollector(Collector):
    def __init__(self, loop: Any, device: str, run: str, instance: str) -> None:
        self._loop = loop  # LearnerLoop: its stats, prefetcher and lag histogram
        self._device = device
        self._family = _Family(run, instance)

    def collect(self) -> Iterator[Metric]:
        stats, f = self._loop.stats, self._family
        prefetcher = self._loop.prefetcher
        yield f.counter("shoal_learner_updates", "Updates done.", stats.updates)
        yield f.counter("shoal_learner_samples", "Items trained on.", stats.samples)
        yield f.counter("shoal_learner_batch_wait_seconds", "Time waiting for a batch.",
                        prefetcher.wait_seconds if prefetcher else 0.0)
        yield f.counter("shoal_learner_update_seconds", "Time in updates.",
                        stats.update_seconds)
        yield f.counter("shoal_learner_weights_published", "Weight versions published.",
                        stats.publishes)
        yield f.counter("shoal_learner_priority_updates_dropped",
                        "Priority updates sent while the replay service was away.",
                        stats.priority_updates_dropped)
        yield f.counter("shoal_learner_stale_items_dropped",
                        "Items older than max_policy_lag versions, left out of updates.",
                        stats.stale_dropped)
        yield f.gauge("shoal_learner_device_info", "The device the learner trains on.", 1.0,
                      {"device": self._device})
        latest = stats.metrics[-1] if stats.metrics else {}
        loss = GaugeMetricFamily("shoal_learner_loss", "Latest value of each loss term.",
                                 labels=["run", "instance", "term"])
        for term, value in latest.items():
            if term.endswith("loss"):
                loss.add_metric([*f.values, term], value)
        yield loss
        buckets, total = self._loop.lag.snapshot()
        lag = HistogramMetricFamily(
            "shoal_learner_policy_lag_versions",
            "Versions between the weights that produced an item and the newest published.",
            labels=["run", "instance"])
        lag.add_metric(f.values, buckets, total)
        yield lag


class LauncherCollector(Collector):
    """The run's launcher: how many actors it runs, and its autoscaling decisions."""

    def __init__(self, actors: Callable[[], int], decisions: Callable[[], dict[str, int]],
                 run: str, instance: str = "launcher") -> None:
        self._actors = actors
        self._decisions = decisions
        self._family = _Family(run, instance)

    def collect(self) -> Iterator[Metric]:
        f = self._family
        yield f.gauge("shoal_launcher_actors", "Actors the run has now.", self._actors())
        decisions = CounterMetricFamily(
            "shoal_autoscale_decisions", "Actor count changes the autoscaler made.",
            labels=["run", "instance", "direction"])
        for direction, count in sorted(self._decisions().items()):
            decisions.add_metric([*f.values, direction], count)
        yield decisions


class MetricsServer:
    """``/metrics`` of one collector on ``host:port`` (0: any free port, then ``port``)."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host, self.port = host, self._server.server_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
