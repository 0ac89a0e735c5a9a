"""The one place environments are made: gymnasium vector envs, and Atari (ale-py) with the
standard DQN preprocessing.

Every env reports true episode returns through ``RecordEpisodeStatistics``, wrapped
beneath the training-only changes (episodic life, reward clipping), so what a run logs
is the game's score, not the clipped, per-life signal the agent learns from; lengths are
agent steps. Actors step the native vector envs of ``native_envs`` (the same semantics,
without a Python loop over envs) where one exists; evaluation plays single ``make_env``s.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.wrappers import (
    AtariPreprocessing,
    ClipReward,
    FrameStackObservation,
    RecordEpisodeStatistics,
)

from shoal.actors.native_envs import native_vector_env
from shoal.algorithms.base import EnvSpec


class UnknownEnv(ValueError):
    pass


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


class EpisodicLife(gym.Wrapper):
    """Ends a training episode at each lost life, but resets the game only when it is
    really over (otherwise a no-op step continues it), as in the DQN paper."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = _lives(self.env)
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> Any:
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._lives = _lives(self.env)
        return obs, info


def _lives(env: gym.Env) -> int:
    return int(cast(Any, env.unwrapped).ale.lives())


def make_env(env_id: str, training: bool = True, render_mode: str | None = None) -> gym.Env:
    """One env. Atari: noop reset, frame skip 4 with max-pool, 84x84 grayscale, frame stack
    4; for training also episodic life and rewards clipped to {-1, 0, 1}. ``render_mode``:
    gymnasium's (``rgb_array`` for a video)."""
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
    try:
        env = (gym.make(env_id, frameskip=1, render_mode=render_mode) if is_atari(env_id)
               else gym.make(env_id, render_mode=render_mode))
    except gym.error.Error as error:
        raise UnknownEnv(f"--env: {error}") from None
    if is_atari(env_id):
        env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                 grayscale_obs=True, terminal_on_life_loss=False)
    env = RecordEpisodeStatistics(env)  # lengths in agent steps (4 frames each on Atari)
    if is_atari(env_id):
        if training:
            env = ClipReward(EpisodicLife(env), -1.0, 1.0)
        env = FrameStackObservation(env, 4)
    return env


def make_vector_env(env_id: str, num_envs: int, seed: int, training: bool = True,
                    native: bool = True) -> VectorEnv:
    """``num_envs`` copies stepped together. SAME_STEP autoreset: an env whose episode ends
    returns the next episode's first observation at once, and the finished episode's last
    observation in ``info["final_obs"]`` (what an n-step adder needs to bootstrap).
    ``native``: a vector env that steps all copies outside Python's per-env loop where
    ``native_envs`` has one (Atari, CartPole), a ``SyncVectorEnv`` of ``make_env`` else."""
    envs = native_vector_env(env_id, num_envs, training) if native else None
    if envs is None:
        envs = SyncVectorEnv([lambda: make_env(env_id, training) for _ in range(num_envs)],
                             autoreset_mode=AutoresetMode.SAME_STEP)
    envs.action_space.seed(seed)
    return envs  # the caller's first reset(seed=...) seeds the envs


def env_spec(env: gym.Env | VectorEnv) -> EnvSpec:
    observation = getattr(env, "single_observation_space", env.observation_space)
    action = getattr(env, "single_action_space", env.action_space)
    if isinstance(action, gym.spaces.Discrete):
        return EnvSpec(tuple(observation.shape or ()), np.dtype(observation.dtype).name,
                       num_actions=int(action.n))
    if isinstance(action, gym.spaces.Box):
        return EnvSpec(tuple(observation.shape or ()), np.dtype(observation.dtype).name,
                       action_shape=tuple(action.shape),
                       action_low=tuple(float(x) for x in action.low.ravel()),
                       action_high=tuple(float(x) for x in action.high.ravel()))
    raise UnknownEnv(f"--env: action space {action} is neither Discrete nor Box")


def probe_spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``, from one env made and closed for the purpose."""
    env = make_env(env_id)
    try:
        return env_spec(env)
    finally:
        env.close()


def episode_returns(info: dict[str, Any]) -> list[tuple[float, int]]:
    """(return, length) of every episode that ended in this vector step (true returns).
    A SyncVectorEnv's SAME_STEP autoreset puts the finished episodes' infos under
    ``final_info``; the native envs put them in ``info`` itself."""
    final = info.get("final_info", {})
    if "episode" not in final:
        final = info
    episode = final.get("episode")
    if episode is None:
        return []
    mask = final.get("_episode", np.ones(len(episode["r"]), bool))
    return [(float(r), int(length))
            for r, length, ended in zip(episode["r"], episode["l"], mask, strict=True) if ended]
