"""The greedy player: a policy's most likely actions, no exploration, on envs that report
the game's true score, writing nothing anywhere. What the learner's periodic evaluation
and ``shoal eval`` play; training episodes say how the exploring actors do, this says how
good the published weights are.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import RecordVideo

from shoal.actors.envs import make_env
from shoal.algorithms.base import Algorithm, EnvSpec, Policy, Weights
from shoal.algorithms.normalization import normalizing


def play_greedy(policy: Policy, env_id: str, episodes: int, seed: int,
                video_dir: Path | None = None) -> list[float]:
    """One total return per episode, episode i on its own env reset with ``seed + i``.
    ``video_dir``: the first episode is also recorded there as an mp4 (gymnasium's
    RecordVideo, which needs moviepy, of the env's ``rgb_array`` frames).

    The envs are evaluation envs (``training=False``: unclipped rewards, whole Atari games),
    and all episodes play at once: each step is one ``greedy`` call on the observations of
    the envs still playing, so an evaluation costs about as many forward passes as its
    longest episode has steps."""
    if episodes < 1:
        raise ValueError(f"episodes: expected a positive count, got {episodes}")
    with contextlib.ExitStack() as closing:
        envs = []
        for index in range(episodes):
            recorded = video_dir is not None and index == 0
            env = make_env(env_id, training=False, render_mode="rgb_array" if recorded else None)
            if recorded:
                env = RecordVideo(env, str(video_dir), name_prefix=f"{env_id.replace('/', '-')}",
                                  episode_trigger=lambda episode: episode == 0)
            closing.callback(env.close)
            envs.append(env)
        bounds = box_bounds(envs[0].action_space)
        observations = [np.asarray(env.reset(seed=seed + i)[0]) for i, env in enumerate(envs)]
        totals = [0.0] * episodes
        playing = list(range(episodes))
        while playing:
            actions = clipped(policy.greedy(np.stack([observations[i] for i in playing])),
                              bounds)
            still = []
            for i, action in zip(playing, actions, strict=True):
                obs, reward, terminated, truncated, _ = envs[i].step(action)
                totals[i] += float(reward)
                observations[i] = np.asarray(obs)
                if not (terminated or truncated):
                    still.append(i)
            playing = still
    return totals


Bounds = tuple[np.ndarray, np.ndarray] | None
"""A Box's (low, high); None for discrete actions."""


def box_bounds(space: gym.Space[Any]) -> Bounds:
    if isinstance(space, gym.spaces.Box):
        return space.low, space.high
    return None


def clipped(actions: np.ndarray, bounds: Bounds) -> np.ndarray:
    """``actions`` inside the Box: a Gaussian's mean, or a sample of it, may lie past its
    bounds, which an env may refuse or silently clip differently."""
    return actions if bounds is None else np.clip(actions, *bounds)


class GreedyEvaluator:
    """Plays ``episodes`` greedy episodes of the weights it is given, always from the same
    start states (``seed``), so two evaluations differ only by the weights.

    It sees nothing but those weights, as an actor does: whatever a policy needs beyond
    its network (observation-normalisation statistics, say) has to travel inside them."""

    def __init__(self, definition: Algorithm[Any], config: Any, env_id: str, spec: EnvSpec,
                 episodes: int, seed: int, normalize_observations: bool = False,
                 video_dir: Path | None = None) -> None:
        if episodes < 1:
            raise ValueError(f"episodes: expected a positive count, got {episodes}")
        self._env_id = env_id
        self._episodes = episodes
        self._seed = seed
        self._video_dir = video_dir
        # The policy's initial weights are overwritten by the first load; drawing them from
        # a forked generator leaves the caller's torch stream (a seeded learner's) as it was.
        with torch.random.fork_rng(devices=[]):
            self.policy: Policy = definition.make_policy(config, spec, 0, 1, seed)
        if normalize_observations:  # with the statistics that come with the weights
            self.policy = normalizing(self.policy, spec.observation_shape)

    def __call__(self, weights: Weights, version: int) -> list[float]:
        self.policy.load(weights, version)
        return play_greedy(self.policy, self._env_id, self._episodes, self._seed,
                           self._video_dir)
