"""The replay service's Prometheus series, read from its tables' ``TableStats`` at scrape
time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal.replay_service.table import TableStats


class ReplayCollector(Collector):
    def __init__(self, tables: Callable[[], list[TableStats]], run: str, instance: str) -> None:
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
