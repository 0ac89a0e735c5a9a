"""A run's rates between two scrapes of its processes' /metrics: what ``shoal top`` shows,
what ``shoal train`` logs as throughput, and what ``--autoscale`` decides from. Control
reads these figures as the dashboard does, without depending on the dashboard.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, str], float]
"""(metric sample name, shoal instance) -> value, summed over any other labels."""


def read_targets(run_dir: Path) -> dict[str, str]:
    """shoal instance -> host:port, from the run's file_sd targets file."""
    groups = json.loads((run_dir / "prometheus_targets.json").read_text())
    return {group["labels"]["shoal_instance"]: group["targets"][0] for group in groups}


def scrape(targets: dict[str, str], timeout: float = 2.0) -> Samples:
    """Every target's samples; a target that does not answer is left out."""
    samples: Samples = {}
    for instance, address in targets.items():
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as page:
                text = page.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, instance)
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


@dataclass
class Rates:
    seconds: float
    env_steps_per_s: dict[str, float]       # per actor instance
    inserts_per_s: float
    samples_per_s: float
    updates_per_s: float
    learner_busy: float                     # fraction of the time in updates
    learner_waiting: float                  # fraction of the time waiting for a batch
    actors_blocked: float                   # mean fraction of actor time blocked on insert
    policy_lag: float | None                # mean versions, over the interval
    recent_return: float | None             # mean over actors of their last 20 episodes
    eval_return: float | None = None        # the learner's latest greedy evaluation

    @property
    def env_steps_per_s_total(self) -> float:
        return sum(self.env_steps_per_s.values())

    @property
    def samples_per_insert(self) -> float | None:
        return self.samples_per_s / self.inserts_per_s if self.inserts_per_s else None

    @staticmethod
    def between(before: Samples, after: Samples, seconds: float) -> Rates:
        def rate(name: str, instance: str | None = None) -> float:
            keys = [key for key in after if key[0] == name
                    and (instance is None or key[1] == instance)]
            return sum(increase(before.get(k, after[k]), after[k]) for k in keys) / seconds

        def increase(earlier: float, later: float) -> float:
            """As Prometheus's rate(): a counter that went down was reset (a restarted
            actor counts from 0), so all of its value is new."""
            return later - earlier if later >= earlier else later

        actors = sorted({instance for name, instance in after
                         if name == "shoal_actor_env_steps_total"})
        lag_count = rate("shoal_learner_policy_lag_versions_count")
        returns = [after[("shoal_actor_episode_return_recent", a)] for a in actors
                   if ("shoal_actor_episode_return_recent", a) in after]
        returns = [r for r in returns if r == r]  # NaN: no episode yet
        blocked = [rate("shoal_actor_insert_blocked_seconds_total", a) for a in actors]
        def fraction(value: float) -> float:
            """Of the time; a counter that grows in steps (blocked time is added when an
            insert returns) can make one short interval look like more than all of it."""
            return min(1.0, max(0.0, value))

        return Rates(
            seconds=seconds,
            env_steps_per_s={a: rate("shoal_actor_env_steps_total", a) for a in actors},
            inserts_per_s=rate("shoal_replay_inserts_total"),
            samples_per_s=rate("shoal_replay_samples_total"),
            updates_per_s=rate("shoal_learner_updates_total"),
            learner_busy=fraction(rate("shoal_learner_update_seconds_total")),
            learner_waiting=fraction(rate("shoal_learner_batch_wait_seconds_total")),
            actors_blocked=fraction(statistics.fmean(blocked)) if blocked else 0.0,
            policy_lag=(rate("shoal_learner_policy_lag_versions_sum") / lag_count
                        if lag_count else None),
            recent_return=statistics.fmean(returns) if returns else None,
            eval_return=next((value for (name, _), value in after.items()
                              if name == "shoal_learner_eval_return"), None))
