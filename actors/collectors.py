"""What an actor turns its steps into, by the kind of experience an algorithm learns from.

``TransitionCollector`` (``Experience.TRANSITIONS``: DQN, SAC): n-step transitions, with
the initial priorities the policy gives them (DQN's Ape-X priorities; SAC's items take the
table's highest priority). ``RolloutCollector`` (``Experience.ROLLOUTS``: PPO, A2C): one
T x E rollout per item, with behaviour log-probs, values and bootstrap values. A
synchronous actor waits after each rollout for the weights the learner trains from it; an
asynchronous one (``max_policy_lag`` K) stays up to K + 1 rollouts ahead of the learner;
an unpaced algorithm's (``RolloutItems.paced`` False: V-trace) never waits.
``observe`` returns (columns with the item axis first, priorities or None), or None when
no item is complete yet. Neither knows an algorithm's names: the algorithm says how to cut
items (``TransitionItems``, ``RolloutItems``) and its policy what they start with.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from shoal.actors.adders import NStepTransitionAdder, RolloutAdder
from shoal.algorithms.base import (
    Algorithm,
    Experience,
    Policy,
    PolicyStep,
    RolloutItems,
    RolloutPolicy,
    TransitionItems,
    TransitionPolicy,
)

Items = tuple[dict[str, np.ndarray], np.ndarray | None]


class Collector(Protocol):
    """What the actor loop asks of either collector."""

    items_per_message: int

    def observe(self, obs: np.ndarray, step: PolicyStep, rewards: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                final_obs: np.ndarray | None) -> Items | None: ...

    def may_continue(self) -> bool:
        """Called after each item written: False when the actor must wait for newer
        weights first."""
        ...

    def flush(self) -> Items | None:
        """Items complete but held back for a fuller batch (the actor is stopping)."""
        ...


class TransitionCollector:
    @staticmethod
    def may_continue() -> bool:
        return True  # off-policy: collect regardless of the learner

    def __init__(self, items: TransitionItems, num_envs: int, policy: TransitionPolicy) -> None:
        # Many small items, handed on a message's worth at a time: one forward pass scores
        # a message's initial priorities, where one per env step cost as much as acting.
        self.items_per_message = items.items_per_message
        self._adder = NStepTransitionAdder(num_envs, items.n_step, items.gamma)
        self._policy = policy

    def observe(self, obs: np.ndarray, step: PolicyStep, rewards: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                final_obs: np.ndarray | None) -> Items | None:
        self._adder.add(obs, step.actions, rewards, next_obs, terminated, truncated, final_obs,
                        self._policy.version, step.extras)
        if self._adder.ready < self.items_per_message:
            return None
        return self.flush()

    def flush(self) -> Items | None:
        taken = self._adder.take()
        if taken is None:
            return None
        columns, extras = taken
        return columns, self._policy.initial_priorities(columns, extras)


class RolloutCollector:
    items_per_message = 1  # a rollout is a message of its own; the learner waits for it

    @staticmethod
    def flush() -> None:
        return None  # a rollout is handed on as soon as it is complete

    def __init__(self, items: RolloutItems, num_envs: int, policy: RolloutPolicy,
                 max_policy_lag: int | None) -> None:
        self._adder = RolloutAdder(num_envs, items.length)
        self._policy = policy
        # Rollouts this actor may have written that the learner has not yet trained on:
        # 1 is synchronous; K + 1 keeps collection going while the learner trains; an
        # unpaced algorithm (V-trace) has no limit.
        self._limit: float = (math.inf if not items.paced
                              else 1 if max_policy_lag is None else max_policy_lag + 1)
        self._left = self._limit
        self._seen_version = policy.version

    def may_continue(self) -> bool:
        """Called after each rollout written: False when the actor must wait for newer
        weights first. Each update consumes about one rollout per actor, so each new
        version gives one back (up to the limit); without that, an actor faster than the
        learner would keep K + 1 rollouts of every version queued, and the learner would
        drop all but one of them as too old."""
        version = self._policy.version
        self._left = min(self._limit, self._left + version - self._seen_version)
        self._seen_version = version
        self._left -= 1
        return self._left > 0

    def observe(self, obs: np.ndarray, step: PolicyStep, rewards: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                final_obs: np.ndarray | None) -> Items | None:
        final_values = np.zeros(len(step.actions), np.float32)
        cut = np.flatnonzero(truncated)
        if len(cut):
            assert final_obs is not None, "an episode was cut without its final observation"
            final_values[cut] = self._policy.values(np.stack([final_obs[i] for i in cut]))
        self._adder.add(obs, step.actions, rewards, terminated, truncated,
                        step.extras["log_prob"], step.extras["value"], final_values,
                        self._policy.version)
        if not self._adder.full:
            return None
        rollout = self._adder.take(self._policy.values(next_obs))
        return {name: column[None] for name, column in rollout.items()}, None


def collector_for(algorithm: Algorithm[object], config: object, num_envs: int, policy: Policy,
                  max_policy_lag: int | None = None) -> Collector:
    """The collector of ``algorithm.experience``; a policy or item shape that does not fit
    it is a registration error, said here rather than in the first step."""
    items = algorithm.items(config)
    if algorithm.experience is Experience.TRANSITIONS:
        if not isinstance(items, TransitionItems) or not isinstance(policy, TransitionPolicy):
            raise TypeError(f"{algorithm.name}: transitions need TransitionItems and a "
                            f"TransitionPolicy, got {items!r} and {type(policy).__name__}")
        return TransitionCollector(items, num_envs, policy)
    if not isinstance(items, RolloutItems) or not isinstance(policy, RolloutPolicy):
        raise TypeError(f"{algorithm.name}: rollouts need RolloutItems and a RolloutPolicy, "
                        f"got {items!r} and {type(policy).__name__}")
    return RolloutCollector(items, num_envs, policy, max_policy_lag)
