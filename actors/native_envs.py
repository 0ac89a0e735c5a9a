"""Vector envs stepped outside Python's per-env loop, with the semantics of shoal's Python
path (``envs.make_env`` inside a ``SyncVectorEnv``): ALE's C++ ``AtariVectorEnv`` for
``ALE/`` ids and gymnasium's numpy ``CartPoleVectorEnv`` for CartPole.

Both give what the adders expect of SAME_STEP autoreset: an env whose episode ended returns
the next episode's first observation at once and the finished one's last in
``info["final_obs"]``; finished episodes' true returns come as ``info["episode"]`` with the
mask ``info["_episode"]`` (gymnasium's vector ``RecordEpisodeStatistics`` layout).

What the ALE does in C++ (noop reset up to 30, frame skip 4 with max-pool over the last
two frames, 84x84 grayscale, a stack of 4, the v5 ids' sticky actions and frame limit), and
what ``NativeAtariVectorEnv`` adds in numpy, because the ALE's own option differs:

- episodic life: the ALE's ``episodic_life`` resets the whole game at each lost life (seen
  with ale-py 0.12: lives are back at 5 after the first loss), where the DQN paper ends the
  training episode and plays on. Here a lost life is a termination while the game goes on.
  One difference remains: the Python path plays a no-op step before the new life's first
  observation; here the agent's next action is the first of the new life.
- reward clipping: the ALE would clip before anyone could sum the true score, so it runs
  unclipped and rewards are clipped here (training only) after the true return is summed.
- frame stack at an episode's (or a life's) start: the ALE pads a new stack with zero
  frames, the Python path (``FrameStackObservation``) with copies of the first frame; here
  the first frame is copied into the stack's older slots until four real frames exist.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode, VectorEnv

STACK = 4  # frames per observation, as the Python path's FrameStackObservation


def ale_game(env_id: str) -> dict[str, Any]:
    """The ALE settings a gymnasium id stands for (game, sticky actions, frame limit), read
    from its registration, so both paths play the same game the same way."""
    import ale_py

    gym.register_envs(ale_py)
    kwargs = dict(gym.spec(env_id).kwargs)
    game = kwargs["game"]
    return {"game": re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower() if game[0].isupper()
            else game,
            "repeat_action_probability": float(kwargs.get("repeat_action_probability", 0.25)),
            "full_action_space": bool(kwargs.get("full_action_space", False)),
            "max_num_frames_per_episode": int(kwargs.get("max_num_frames_per_episode")
                                              or 108_000)}


class EpisodeStats:
    """Each env's running true return, length and start time, handed out when episodes
    end in ``RecordEpisodeStatistics``'s layout (what ``envs.episode_returns`` reads)."""

    def __init__(self, num_envs: int) -> None:
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._started = np.zeros(num_envs, np.float64)

    def reset(self) -> None:
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._started[:] = time.perf_counter()

    def add(self, rewards: np.ndarray) -> None:
        self._returns += rewards
        self._lengths += 1

    def finish(self, ended: np.ndarray) -> dict[str, Any]:
        """The info entries of the episodes ``ended`` marks, which start afresh."""
        now = time.perf_counter()
        entries = {"episode": {"r": np.where(ended, self._returns, 0.0),
                               "l": np.where(ended, self._lengths, 0),
                               "t": np.where(ended, now - self._started, 0.0)},
                   "_episode": ended}
        self._returns[ended] = 0.0
        self._lengths[ended] = 0
        self._started[ended] = now
        return entries


class NativeAtariVectorEnv(VectorEnv):
    """``num_envs`` Atari games stepped by the ALE's C++ thread pool (``num_threads``
    threads, default one per env up to the cores); ``training`` adds episodic life and
    reward clipping. ``info["lives"]`` is the ALE's."""

    def __init__(self, env_id: str, num_envs: int, training: bool = True,
                 num_threads: int | None = None) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self._ale = AtariVectorEnv(
            num_envs=num_envs, **ale_game(env_id),
            num_threads=num_threads or min(num_envs, os.cpu_count() or 1),
            autoreset_mode=AutoresetMode.SAME_STEP, img_height=84, img_width=84,
            grayscale=True, stack_num=STACK, frameskip=4, maxpool=True, noop_max=30,
            episodic_life=False, reward_clipping=False, use_fire_reset=False)
        self.num_envs = num_envs
        self.single_observation_space = self._ale.single_observation_space
        self.single_action_space = self._ale.single_action_space
        self.observation_space = self._ale.observation_space
        self.action_space = self._ale.action_space
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self._training = training
        self._frames = np.zeros(num_envs, np.int64)  # real frames in each stack, up to 4
        self._lives = np.zeros(num_envs, np.int64)
        self._episodes = EpisodeStats(num_envs)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """All envs; ``seed`` seeds env i with seed + i, as a SyncVectorEnv does."""
        if seed is not None:
            self.action_space.seed(seed)
        obs, info = self._ale.reset(seed=seed)
        self._frames[:] = 1
        self._lives[:] = info["lives"]
        self._episodes.reset()
        return _padded(obs, self._frames), info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, ale_info = self._ale.step(
            np.asarray(actions, np.int64))
        info: dict[str, Any] = dict(ale_info)
        rewards = rewards.astype(np.float64)
        self._episodes.add(rewards)
        game_over = terminated | truncated  # the ALE has already reset these games
        lives = info["lives"].astype(np.int64)
        life_lost = (self._training & ~game_over & (lives > 0) & (lives < self._lives))
        self._lives = lives
        ended = game_over | life_lost
        if ended.any():
            final = info.get("final_obs")
            final = np.array(obs if final is None else final)
            final[life_lost] = obs[life_lost]
            _padded(final, np.minimum(self._frames + 1, STACK), out=final)
            info["final_obs"] = final
            info["_final_obs"] = ended
            obs = np.array(obs)
            obs[life_lost] = obs[life_lost][:, -1:]  # a new life's stack starts afresh
            terminated = terminated | life_lost
        self._frames = np.where(ended, 1, np.minimum(self._frames + 1, STACK))
        obs = _padded(obs, self._frames)
        if game_over.any():
            info.update(self._episodes.finish(game_over))
        if self._training:
            rewards = np.clip(rewards, -1.0, 1.0)
        return obs, rewards, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self._ale.close()


def _padded(obs: np.ndarray, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Stacks whose envs have seen fewer than four frames since their episode began, with
    the oldest real frame copied into the slots before it (zeros there from the ALE)."""
    short = np.flatnonzero(frames < STACK)
    if not len(short):
        return obs if out is None else out
    result = np.array(obs) if out is None else out
    for env in short:
        first = STACK - int(frames[env])
        result[env, :first] = result[env, first]
    return result


class SameStepCartPole(CartPoleVectorEnv):
    """gymnasium's numpy CartPole (one array operation steps every env) with SAME_STEP
    autoreset: its own NEXT_STEP mode spends a step, action ignored, on each reset, which
    would put a transition from a final observation to a first one in every episode.
    Episode statistics are kept here, in ``RecordEpisodeStatistics``'s layout."""

    metadata = {**CartPoleVectorEnv.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, max_episode_steps: int = 500) -> None:
        super().__init__(num_envs=num_envs, max_episode_steps=max_episode_steps)
        self._episodes = EpisodeStats(num_envs)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.action_space.seed(seed)
        self._episodes.reset()
        return super().reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, _ = super().step(action)
        self._episodes.add(rewards)
        done = self.prev_done
        if not done.any():
            return obs, rewards, terminated, truncated, {}
        assert self.state is not None
        count = int(done.sum())
        self.state[:, done] = self.np_random.uniform(low=self.low, high=self.high,
                                                     size=(4, count))
        self.steps[done] = 0
        self.prev_done = np.zeros_like(done)
        info = {"final_obs": obs.copy(), "_final_obs": done.copy(),
                **self._episodes.finish(done.copy())}
        obs = obs.copy()
        obs[done] = self.state.T[done].astype(np.float32)
        return obs, rewards, terminated, truncated, info


NATIVE_CLASSIC = {"CartPole-v1": 500, "CartPole-v0": 200}  # id: its time limit


def native_vector_env(env_id: str, num_envs: int, training: bool) -> VectorEnv | None:
    """The native vector env of ``env_id``, or None where there is none."""
    if env_id.startswith("ALE/"):
        return NativeAtariVectorEnv(env_id, num_envs, training)
    if env_id in NATIVE_CLASSIC:
        return SameStepCartPole(num_envs, NATIVE_CLASSIC[env_id])
    return None
