"""Running observation statistics that many processes keep apart and one merges: each actor
counts what it sees since its last report, the learner adds every report into one mean and
variance, and broadcasts that with the weights, so every actor and the learner normalise
alike (SB3's VecNormalize, RLlib's synced MeanStdFilter).

The merge is Chan et al.'s parallel update of (count, mean, M2): exact, in any order, for
any split of the data, where averaging per-actor variances is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoal.algorithms.base import Policy, PolicyStep, RolloutPolicy, TransitionPolicy, Weights

PREFIX = "observation_stats."
"""How the statistics travel among the weights: ``observation_stats.count`` and so on,
names no network parameter has."""
CLIP = 10.0
"""Normalised observations are clipped to +-CLIP (SB3's clip_obs): one wild observation
cannot make a huge input."""
EPSILON = 1e-8


@dataclass
class RunningStats:
    """Count, mean and M2 (the sum of squared deviations from the mean) per feature."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> RunningStats:
        return cls(0.0, np.zeros(shape, np.float64), np.zeros(shape, np.float64))

    @classmethod
    def of(cls, batch: np.ndarray) -> RunningStats:
        """The statistics of a batch of observations (rows)."""
        values = np.asarray(batch, np.float64)
        mean = values.mean(axis=0)
        return cls(float(len(values)), mean, ((values - mean) ** 2).sum(axis=0))

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.count if self.count > 0 else np.ones_like(self.m2)

    def add(self, other: RunningStats) -> None:
        """Merges ``other`` in (Chan et al.)."""
        if other.count == 0:
            return
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"observation stats: expected shape {self.mean.shape}, "
                             f"got {other.mean.shape}")
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / total)
        self.count = total

    def update(self, batch: np.ndarray) -> None:
        self.add(RunningStats.of(batch))

    def copy(self) -> RunningStats:
        return RunningStats(self.count, self.mean.copy(), self.m2.copy())

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """(obs - mean) / sqrt(var + eps), clipped, as float32."""
        scaled = (np.asarray(obs, np.float64) - self.mean) / np.sqrt(self.var + EPSILON)
        return np.clip(scaled, -CLIP, CLIP).astype(np.float32)

    def to_weights(self) -> Weights:
        return {f"{PREFIX}count": np.array(self.count, np.float64),
                f"{PREFIX}mean": self.mean.copy(), f"{PREFIX}m2": self.m2.copy()}

    def to_lists(self) -> dict[str, Any]:
        """As JSON holds it (a checkpoint's counters, which events log)."""
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_lists(cls, values: Mapping[str, Any]) -> RunningStats:
        return cls(float(values["count"]), np.asarray(values["mean"], np.float64),
                   np.asarray(values["m2"], np.float64))

    @classmethod
    def from_weights(cls, weights: Weights) -> RunningStats | None:
        """The statistics among ``weights``; None when they carry none."""
        if f"{PREFIX}count" not in weights:
            return None
        return cls(float(weights[f"{PREFIX}count"]),
                   np.asarray(weights[f"{PREFIX}mean"], np.float64),
                   np.asarray(weights[f"{PREFIX}m2"], np.float64))


def split_weights(weights: Weights) -> tuple[Weights, RunningStats | None]:
    """(the network's weights, the observation statistics among them, if any)."""
    network = {name: array for name, array in weights.items() if not name.startswith(PREFIX)}
    return network, RunningStats.from_weights(weights)


class NormalizingPolicy:
    """Any policy, fed observations normalised with the statistics of the weights it last
    loaded; it counts the raw observations it acts on, for its actor's next report. Greedy
    play (evaluation) and bootstrap values count nothing: only what the actor collects."""

    def __init__(self, policy: Policy, observation_shape: tuple[int, ...]) -> None:
        self.policy = policy
        self.stats = RunningStats.empty(observation_shape)   # as the learner published
        self.seen = RunningStats.empty(observation_shape)    # since the last report

    @property
    def version(self) -> int:
        return self.policy.version

    def act(self, observations: np.ndarray) -> PolicyStep:
        self.seen.update(observations)
        return self.policy.act(self.stats.normalize(observations))

    def greedy(self, observations: np.ndarray) -> np.ndarray:
        return self.policy.greedy(self.stats.normalize(observations))

    def load(self, weights: Weights, version: int) -> None:
        network, stats = split_weights(weights)
        self.policy.load(network, version)
        if stats is not None:
            self.stats = stats

    def take_report(self) -> RunningStats:
        """What it saw since the last call, which then starts afresh."""
        seen, self.seen = self.seen, RunningStats.empty(self.seen.mean.shape)
        return seen


class NormalizingRolloutPolicy(NormalizingPolicy):
    policy: RolloutPolicy

    def values(self, observations: np.ndarray) -> np.ndarray:
        return self.policy.values(self.stats.normalize(observations))


class NormalizingTransitionPolicy(NormalizingPolicy):
    policy: TransitionPolicy

    def initial_priorities(self, items: Mapping[str, np.ndarray],
                           extras: Mapping[str, np.ndarray]) -> np.ndarray | None:
        normalized = {name: self.stats.normalize(column) if name in OBSERVATIONS else column
                      for name, column in items.items()}
        return self.policy.initial_priorities(normalized, extras)


OBSERVATIONS = ("obs", "next_obs")
"""The item columns that hold observations: what the learner normalises in a batch."""


def normalizing(policy: Policy, observation_shape: tuple[int, ...]) -> NormalizingPolicy:
    """``policy`` behind normalisation, keeping the protocol its collector needs."""
    if isinstance(policy, RolloutPolicy):
        return NormalizingRolloutPolicy(policy, observation_shape)
    if isinstance(policy, TransitionPolicy):
        return NormalizingTransitionPolicy(policy, observation_shape)
    return NormalizingPolicy(policy, observation_shape)
