"""The launcher's Prometheus series: the run's actor count and autoscaling decisions."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal.protos.exposition import Families


class LauncherCollector(Collector):
    """The run's launcher: how many actors it runs, and its autoscaling decisions."""

    def __init__(self, actors: Callable[[], int], decisions: Callable[[], dict[str, int]],
                 run: str, instance: str = "launcher") -> None:
        self._actors = actors
        self._decisions = decisions
        self._family = Families(run, instance)

    def collect(self) -> Iterator[Metric]:
        f = self._family
        yield f.gauge("shoal_launcher_actors", "Actors the run has now.", self._actors())
        decisions = CounterMetricFamily(
            "shoal_autoscale_decisions", "Actor count changes the autoscaler made.",
            labels=["run", "instance", "direction"])
        for direction, count in sorted(self._decisions().items()):
            decisions.add_metric([*f.values, direction], count)
        yield decisions
