"""Adders turn a vector env's steps into replay items, keeping that out of the actor loop
(as Acme's ``adders/reverb/transition.py`` does).

``NStepTransitionAdder`` emits, for each env, the transition
(s_t, a_t, R = sum_{k<m} gamma^k r_{t+k}, s_{t+m}, discount) with m = n, or fewer when the
episode ended first; discount = gamma^m to bootstrap from s_{t+m}, or 0 when the episode
terminated. A truncated episode (time limit) still bootstraps, from its final observation.

``RolloutAdder`` emits T steps of all E envs as one item for on-policy learners.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class NStepTransitionAdder:
    """Vectorised over envs: the last n steps of every env sit in ring buffers ([n, E, ...],
    slot = step mod n) and completed transitions are written into growing output columns.
    In the common step (every env has n steps pending, none ended) each field costs one
    array operation for all envs; envs whose episode ended are walked one by one. The
    per-env Python loop this replaces was most of an actor's own cost on CartPole."""

    def __init__(self, num_envs: int, n_step: int, gamma: float) -> None:
        if n_step < 1:
            raise ValueError(f"n_step: expected >= 1, got {n_step}")
        self.n_step = n_step
        self.gamma = gamma
        self._num_envs = num_envs
        self._powers = gamma ** np.arange(n_step, dtype=np.float64)
        # weights[s] @ rewards (the [n, E] ring) is the n-step return of the steps whose
        # oldest sits in slot s: slot j is (j - s) mod n steps after it
        self._weights = np.stack([self._powers[(np.arange(n_step) - s) % n_step]
                                  for s in range(n_step)])
        self._ring: dict[str, np.ndarray] = {}      # obs, action, reward, extra.*
        self._versions = np.zeros(n_step, np.int64)  # each slot's policy version
        self._extra_names: tuple[str, ...] = ()
        self._pending = np.zeros(num_envs, np.int64)  # steps not yet emitted, per env
        self._all_full = False                         # every env has n steps pending
        self._step = 0                                  # vector steps added so far
        self._out: dict[str, np.ndarray] = {}
        self.ready = 0   # transitions completed and not yet taken

    def _rings(self, values: Mapping[str, np.ndarray]) -> None:
        for name, value in values.items():
            self._ring[name] = np.empty((self.n_step, *value.shape), value.dtype)

    def _reserve(self, count: int, bootstrap: np.ndarray) -> slice:
        """Room for ``count`` more transitions in the output columns (doubling them)."""
        start, stop = self.ready, self.ready + count
        if not self._out or stop > len(self._out["reward"]):
            size = max(2 * stop, 64)
            fields = {**{name: ring[0, 0] for name, ring in self._ring.items()},
                      "next_obs": bootstrap, "discount": np.float64(0),
                      "version": np.int64(0)}
            grown = {name: np.empty((size, *np.shape(value)), np.asarray(value).dtype)
                     for name, value in fields.items()}
            for name, column in self._out.items():
                grown[name][:start] = column[:start]
            self._out = grown
        self.ready = stop
        return slice(start, stop)

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
        values = {"obs": obs, "action": actions, "reward": rewards,
                  **{f"extra.{name}": value for name, value in (extras or {}).items()}}
        if not self._ring:
            self._extra_names = tuple(extras or {})
            self._rings({name: np.asarray(value) for name, value in values.items()})
        n = self.n_step
        slot = self._step % n
        for name, value in values.items():
            self._ring[name][slot] = value
        self._versions[slot] = version
        self._step += 1
        oldest = self._step % n  # of an env with n steps pending
        done = np.logical_or(terminated, truncated)
        if self._all_full and not done.any():
            self._emit_oldest(oldest, slice(None), self._num_envs, next_obs)
            return
        self._pending = np.minimum(self._pending + 1, n)
        full = np.flatnonzero((self._pending == n) & ~done)
        if len(full):
            self._emit_oldest(oldest, full, len(full), next_obs)
            self._pending[full] -= 1
        for env in np.flatnonzero(done):
            assert final_obs is not None, "an episode ended without its final observation"
            self._emit_episode_end(int(env), np.asarray(final_obs[env]),
                                   bool(terminated[env]))
        self._all_full = bool((self._pending == n - 1).all())  # n after the next add

    def _emit_oldest(self, oldest: int, envs: np.ndarray | slice, count: int,
                     next_obs: np.ndarray) -> None:
        """The oldest pending step of each of ``envs`` (``count`` of them; a slice of all
        of them costs no gather) becomes a transition to its ``next_obs``."""
        rows = self._reserve(count, next_obs[0])
        out = self._out
        for name, ring in self._ring.items():
            if name != "reward":
                out[name][rows] = ring[oldest, envs]
        out["reward"][rows] = self._weights[oldest] @ self._ring["reward"][:, envs]
        out["next_obs"][rows] = next_obs[envs]
        out["discount"][rows] = self.gamma ** self.n_step
        out["version"][rows] = self._versions[oldest]

    def _emit_episode_end(self, env: int, last: np.ndarray, terminated: bool) -> None:
        """Every pending step of ``env`` becomes a transition to its final observation."""
        count = int(self._pending[env])
        slots = (self._step - count + np.arange(count)) % self.n_step   # oldest first
        own = self._ring["reward"][slots, env].astype(np.float64)
        rows = self._reserve(count, last)
        out = self._out
        for name, ring in self._ring.items():
            if name != "reward":
                out[name][rows] = ring[slots, env]
        # the j-th oldest step's return runs to the episode's end: count - j steps
        out["reward"][rows] = [self._powers[:count - j] @ own[j:] for j in range(count)]
        out["next_obs"][rows] = last
        out["discount"][rows] = (0.0 if terminated
                                 else self.gamma ** (count - np.arange(count)))
        out["version"][rows] = self._versions[slots]
        self._pending[env] = 0

    def take(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """The transitions completed since the last call, as columns, and the extras of
        the steps they start at, as columns of their own (None if there are none)."""
        if not self.ready:
            return None
        columns = {name: column[:self.ready].copy() for name, column in self._out.items()}
        self.ready = 0
        extras = {name: columns.pop(f"extra.{name}") for name in self._extra_names}
        actions = columns["action"]
        return {
            "obs": columns["obs"],
            # discrete actions as int64 (DQN), Box actions as float32 (SAC)
            "action": actions.astype(np.int64 if np.issubdtype(actions.dtype, np.integer)
                                     else np.float32, copy=False),
            "reward": columns["reward"].astype(np.float32),
            "next_obs": columns["next_obs"],
            "discount": columns["discount"].astype(np.float32),
            "version": columns["version"],
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
