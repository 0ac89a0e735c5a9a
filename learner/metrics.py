"""The learner's Prometheus series, read from its ``LearnerLoop`` (and its evaluations) at
scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal.learner.learner import LearnerLoop
from shoal.protos.exposition import Families


class LearnerCollector(Collector):
    def __init__(self, loop: LearnerLoop, device: str, run: str, instance: str) -> None:
        self._loop = loop  # LearnerLoop: its stats, prefetcher and lag histogram
        self._device = device
        self._family = Families(run, instance)

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
        evaluation = self._loop.evaluation
        if evaluation is not None:  # each series only once it has a value
            newest = evaluation.latest
            if newest is not None:
                yield f.gauge("shoal_learner_eval_return",
                              "Mean greedy return of the latest evaluation.", newest.mean_return)
            if evaluation.best is not None:
                yield f.gauge("shoal_learner_best_eval_return",
                              "Mean greedy return of the best evaluation (best.pt).",
                              evaluation.best)
