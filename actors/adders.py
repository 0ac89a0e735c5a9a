"""Adders turn a vector env's steps into replay items, keeping that out of the actor loop
(as Acme's ``adders/reverb/transition.py`` does).

``NStepTransitionAdder`` emits, for each env, the transition
(s_t, a_t, R = sum_{k<m} gamma^k r_{t+k}, s_{t+m}, discount) with m = n, or fewer when the
episode ended first; discount = gamma^m to bootstrap from s_{t+m}, or 0 when the episode
terminated. A truncated episode (time limit) still bootstraps, from its final observation.

``RolloutAdder`` emits T steps of all E envs as one item for on-policy learners.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np


class _Pending(NamedTuple):
    obs: np.ndarray
    action: np.ndarray
    reward: float
    extras: tuple[Any, ...]   # the policy's extras of this env at this step
    version: int


class NStepTransitionAdder:
    def __init__(self, num_envs: int, n_step: int, gamma: float) -> None:
        if n_step < 1:
            raise ValueError(f"n_step: expected >= 1, got {n_step}")
        self.n_step = n_step
        self.gamma = gamma
        self._pending: list[deque[_Pending]] = [deque() for _ in range(num_envs)]
        self._out: list[tuple[_Pending, float, np.ndarray, float]] = []
        self._extra_names: tuple[str, ...] = ()

    def _emit(self, env: int, bootstrap_obs: np.ndarray, terminated: bool) -> None:
        """The oldest pending step of ``env`` becomes a transition to ``bootstrap_obs``."""
        steps = self._pending[env]
        reward = 0.0
        for k, step in enumerate(steps):
            reward += self.gamma ** k * step.reward
        discount = 0.0 if terminated else self.gamma ** len(steps)
        self._out.append((steps.popleft(), reward, bootstrap_obs, discount))

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_obs: np.ndarray | None,
        version: int,
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """One vector-env step. ``next_obs`` is what the env returned: for envs whose
        episode ended it is already the next episode's first observation, and the last
        observation of the finished one is ``final_obs[env]`` (gymnasium's SAME_STEP
        autoreset). ``extras`` (per env: the policy's, whatever their names) travel with
        the transition that starts at this step, for its initial priority."""
        extras = extras or {}
        self._extra_names = tuple(extras)
        columns = [extras[name] for name in self._extra_names]
        for env in range(len(actions)):
            self._pending[env].append(_Pending(
                obs[env], actions[env], float(rewards[env]),
                tuple(column[env] for column in columns), version))
            done = bool(terminated[env] or truncated[env])
            if done:
                assert final_obs is not None, "an episode ended without its final observation"
                last = final_obs[env]
                while self._pending[env]:
                    self._emit(env, last, bool(terminated[env]))
            elif len(self._pending[env]) == self.n_step:
                self._emit(env, next_obs[env], terminated=False)

    def take(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """The transitions completed since the last call, as columns, and the extras of
        the steps they start at, as columns of their own (None if there are none)."""
        if not self._out:
            return None
        steps, rewards, bootstrap, discounts = zip(*self._out, strict=True)
        self._out = []
        actions = np.stack([np.asarray(step.action) for step in steps])
        extras = {name: np.stack([step.extras[index] for step in steps])
                  for index, name in enumerate(self._extra_names)}
        return {
            "obs": np.stack([step.obs for step in steps]),
            # discrete actions as int64 (DQN), Box actions as float32 (SAC)
            "action": actions.astype(np.int64 if np.issubdtype(actions.dtype, np.integer)
                                     else np.float32),
            "reward": np.array(rewards, dtype=np.float32),
            "next_obs": np.stack(bootstrap),
            "discount": np.array(discounts, dtype=np.float32),
            "version": np.array([step.version for step in steps], dtype=np.int64),
        }, extras


class RolloutAdder:
    """``length`` steps of all envs as one item, time first ([T, E, ...]), for the rollout
    learners (PPO, A2C, TRPO, IMPALA). Terminations and truncations are kept apart: a
    truncated episode bootstraps from the value of its final observation
    (``final_values``, computed by the actor), a terminated one does not.
    ``next_value[t]`` is the value of the observation after step t, so GAE needs no
    network pass to bootstrap (see ``algorithms/returns.py``); the last step's is the
    value of the observation the next rollout starts from (``take(last_values)``)."""

    def __init__(self, num_envs: int, length: int) -> None:
        if length < 1:
            raise ValueError(f"length: expected >= 1, got {length}")
        self.num_envs = num_envs
        self.length = length
        self._steps: list[dict[str, np.ndarray]] = []

    @property
    def full(self) -> bool:
        return len(self._steps) == self.length

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, log_probs: np.ndarray,
            values: np.ndarray, final_values: np.ndarray, version: int) -> None:
        """One vector-env step; ``values`` are V(obs) from acting, ``final_values`` the
        values of the final observations of episodes truncated at this step (read there
        only)."""
        if self.full:
            raise RuntimeError("the rollout is full: take() it before adding more steps")
        self._steps.append({
            "obs": np.asarray(obs), "action": np.asarray(actions),
            "reward": np.asarray(rewards, np.float32),
            "terminated": np.asarray(terminated, bool), "truncated": np.asarray(truncated, bool),
            "log_prob": np.asarray(log_probs, np.float32), "value": np.asarray(values, np.float32),
            "final_value": np.asarray(final_values, np.float32),
            "version": np.full(self.num_envs, version, np.int64)})

    def take(self, last_values: np.ndarray) -> dict[str, np.ndarray]:
        """The full rollout as columns; ``last_values`` is V of the observation after its
        last step (the first of the next rollout)."""
        if not self.full:
            raise RuntimeError(f"the rollout has {len(self._steps)} of {self.length} steps")
        columns = {name: np.stack([step[name] for step in self._steps])
                   for name in self._steps[0]}
        self._steps = []
        following = np.concatenate([columns["value"][1:],
                                    np.asarray(last_values, np.float32)[None]])
        next_value = np.where(columns["truncated"], columns.pop("final_value"), following)
        columns["next_value"] = np.where(columns["terminated"], 0.0, next_value).astype(
            np.float32)
        return columns
