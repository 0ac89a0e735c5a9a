"""The actor loop: step a vector env with the policy, turn steps into replay items, write
them, follow the learner's weights. Plain logic: the Ray actor and ``shoal actor`` are thin
shells around ``Actor.run``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from shoal.actors.collectors import Collector, Items, collector_for
from shoal.actors.config import CollectionConfig
from shoal.actors.envs import episode_returns, make_vector_env
from shoal.actors.weights import WeightFollower
from shoal.algorithms.base import Algorithm, EnvSpec, Policy
from shoal.algorithms.normalization import NormalizingPolicy, RunningStats, normalizing
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.reconnecting import ReconnectingWriter


@dataclass
class Episode:
    actor: int
    env_return: float
    length: int
    env_steps: int        # this actor's env steps when it ended
    version: int          # policy version that played its last step
    time: float


@dataclass
class ActorStats:
    """What an actor has done; ``drain`` hands new episodes to whoever reports them."""

    actor: int
    env_steps: int = 0
    items_sent: int = 0
    items_stored: int = 0                # acknowledged by the replay service (all, once stopped)
    items_lost: int = 0                  # unacknowledged when the replay service went away
    version: int = 0
    episodes: int = 0
    inference_seconds: float = 0.0       # in the policy's forward pass
    insert_blocked_seconds: float = 0.0  # waiting for the replay service to take items
    first_step_time: float | None = None
    _episodes: deque[Episode] = field(default_factory=deque)
    _recent_returns: deque[float] = field(default_factory=lambda: deque(maxlen=20))

    def record(self, episode: Episode) -> None:
        self._episodes.append(episode)
        self._recent_returns.append(episode.env_return)
        self.episodes += 1

    @property
    def recent_return(self) -> float | None:
        """Mean return of this actor's last 20 episodes (None before the first)."""
        returns = list(self._recent_returns)
        return sum(returns) / len(returns) if returns else None

    def drain(self) -> list[Episode]:
        episodes = []
        while self._episodes:
            episodes.append(self._episodes.popleft())
        return episodes


@dataclass
class Collecting:
    """An actor's envs and collector between two of its steps."""

    envs: gym.vector.VectorEnv
    collector: Collector
    obs: np.ndarray


class Actor:
    def __init__(
        self,
        algorithm: Algorithm[Any],
        config: Any,
        env_id: str,
        spec: EnvSpec,
        collection: CollectionConfig,
        *,
        actor_index: int,
        num_actors: int,
        seed: int,
        replay: ReplayClient | None,
        table: str,
        weights: WeightFollower | None,
    ) -> None:
        """``config``: the algorithm's settings (its ``config_type``); ``spec``: the env's
        spaces, as the run probed them once; ``seed``: the run's (this actor's is
        seed + 1000 actor_index); ``replay``: where ``run`` writes its items (None for an
        actor driven step by step, as a deterministic run's is)."""
        self.stats = ActorStats(actor=actor_index)
        self._config = config
        self._env_id = env_id
        self._num_envs = collection.envs_per_actor
        self._max_policy_lag = collection.max_policy_lag
        self._seed = seed + 1000 * actor_index
        self._replay = replay
        self._table = table
        self._weights = weights
        self.policy: Policy = algorithm.make_policy(config, spec, actor_index, num_actors,
                                                    self._seed)
        if collection.normalize_observations:
            self.policy = normalizing(self.policy, spec.observation_shape)
        # Gaussian policies sample past a Box's bounds: the env gets the clipped action,
        # the item keeps the sampled one (its log-prob is the one the learner scores).
        self._bounds = (None if spec.discrete
                        else (np.asarray(spec.action_low, np.float32).reshape(spec.action_shape),
                              np.asarray(spec.action_high, np.float32).reshape(spec.action_shape)))
        self._algorithm = algorithm

    def _follow_weights(self) -> None:
        if self._weights is None:
            return
        newer = self._weights.newer_than(self.policy.version)
        if newer is not None:
            version, weights = newer
            self.policy.load(weights, version)
            self.stats.version = version

    def _wait_for_newer_weights(self, stop: threading.Event) -> None:
        """On-policy collection: no more rollouts from these weights until the learner
        has trained (without a learner, there is nothing to wait for)."""
        if self._weights is None:
            return
        version = self.policy.version
        while not stop.is_set() and not self._weights.wait_newer_than(version, timeout=0.2):
            pass
        self._follow_weights()

    @contextlib.contextmanager
    def collecting(self) -> Iterator[Collecting]:
        """This actor's envs, reset with its seed, and its collector, closed on leaving."""
        torch.set_num_threads(1)  # many actors share the cores; one thread each
        envs = make_vector_env(self._env_id, self._num_envs, self._seed)
        try:
            collector = collector_for(self._algorithm, self._config, self._num_envs,
                                      self.policy, self._max_policy_lag)
            obs, _ = envs.reset(seed=self._seed)
            yield Collecting(envs, collector, obs)
        finally:
            envs.close()

    def step(self, collecting: Collecting) -> Items | None:
        """One step of every env with the policy's actions, its episodes recorded; the
        items it completed (columns, initial priorities or None), or None."""
        stats = self.stats
        started = time.perf_counter()
        step = self.policy.act(collecting.obs)
        stats.inference_seconds += time.perf_counter() - started
        actions = step.actions if self._bounds is None else np.clip(step.actions, *self._bounds)
        next_obs, rewards, terminated, truncated, info = collecting.envs.step(actions)
        if stats.first_step_time is None:
            stats.first_step_time = time.time()
        items = collecting.collector.observe(collecting.obs, step, rewards, next_obs,
                                             terminated, truncated, info.get("final_obs"))
        if items is not None:
            stats.items_sent += len(next(iter(items[0].values())))
        stats.env_steps += self._num_envs
        for env_return, length in episode_returns(info):
            stats.record(Episode(stats.actor, env_return, length, stats.env_steps,
                                 self.policy.version, time.time()))
        collecting.obs = next_obs
        return items

    def observation_report(self) -> RunningStats | None:
        """The observations seen since the last report, for the run's statistics (None:
        this policy does not normalise)."""
        return self.policy.take_report() if isinstance(self.policy, NormalizingPolicy) else None

    def run(self, stop: threading.Event, max_env_steps: int | None = None) -> None:
        """Collects until ``stop`` is set (or this actor took ``max_env_steps`` steps)."""
        if self._replay is None:
            raise ValueError("replay: run writes to a replay service; without one, drive "
                             "the actor with step")
        stats = self.stats
        with self.collecting() as collecting, ReconnectingWriter(
                self._replay, self._table, stop,
                max_items_per_message=collecting.collector.items_per_message) as writer:
            while not stop.is_set() and (max_env_steps is None
                                         or stats.env_steps < max_env_steps):
                self._follow_weights()
                items = self.step(collecting)
                if items is None:
                    continue
                writer.extend(*items)
                report = self.observation_report()
                if report is not None and self._weights is not None:
                    self._weights.report(report)
                if not collecting.collector.may_continue():  # on-policy: bounded lag
                    self._wait_for_newer_weights(stop)
                stats.insert_blocked_seconds = writer.blocked_seconds
                stats.items_stored = writer.items_stored
                stats.items_lost = writer.items_lost
            held = collecting.collector.flush()
            if held is not None:
                stats.items_sent += len(next(iter(held[0].values())))
                writer.extend(*held)
        stats.items_stored = writer.items_stored  # closing waited for every item
