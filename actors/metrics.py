"""The actor's Prometheus series, read from its ``ActorStats`` at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from shoal.actors.actor import ActorStats
from shoal.protos.exposition import Families


class ActorCollector(Collector):
    def __init__(self, stats: ActorStats, run: str, instance: str) -> None:
        self._stats = stats
        self._family = Families(run, instance)

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
