"""What an actor turns its steps into, by the kind of experience an algorithm learns from.

``TransitionCollector`` (DQN, SAC): n-step transitions, with Ape-X initial priorities
when the policy gives them (DQN; SAC's items take the table's highest priority).
``RolloutCollector`` (PPO, A2C): one T x E rollout per item, with behaviour log-probs,
values and bootstrap values. A synchronous actor waits after each rollout for the weights
the learner trains from it; an asynchronous one (``max_policy_lag`` K) stays up to K + 1
rollouts ahead of the learner. ``observe`` returns (columns with the item axis first,
priorities or None), or None when no item is complete yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.actors.adders import NStepTransitionAdder, RolloutAdder
from shoal.algorithms.base import PolicyStep

Items = tuple[dict[str, np.ndarray], np.ndarray | None]


class TransitionCollector:
    @staticmethod
    def may_continue() -> bool:
        return True  # off-policy: collect regardless of the learner

    def __init__(self, config: Any, num_envs: int, policy: Any) -> None:
        # Many small items: the writer batches them into messages.
        self.items_per_message: int = config.items_per_message
        self._adder = NStepTransitionAdder(num_envs, config.n_step, config.gamma)
        self._policy = policy

    def observe(self, obs: np.ndarray, step: PolicyStep, rewards: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                final_obs: np.ndarray | None) -> Items | None:
        q_values = step.extras.get("q_values")  # DQN's, for Ape-X initial priorities
        q_taken = (None if q_values is None
                   else q_values[np.arange(len(step.actions)), step.actions])
        self._adder.add(obs, step.actions, rewards, next_obs, terminated, truncated, final_obs,
                        self._policy.version, q_taken=q_taken)
        items = self._adder.take()
        if items is None:
            return None
        priorities = self._policy.initial_priorities(items)
        del items["q_taken"]
        return items, priorities


class RolloutCollector:
    items_per_message = 1  # a rollout is a message of its own; the learner waits for it

    def __init__(self, config: Any, num_envs: int, policy: Any) -> None:
        self._adder = RolloutAdder(num_envs, config.rollout_length)
        self._policy = policy
        # Rollouts this actor may have written that the learner has not yet trained on:
        # 1 is synchronous; K + 1 keeps collection going while the learner trains.
        lag = config.max_policy_lag
        self._limit = 1 if lag is None else lag + 1
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


COLLECTORS = {"transitions": TransitionCollector, "rollouts": RolloutCollector}
