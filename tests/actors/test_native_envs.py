"""The native vector envs (ALE's C++ AtariVectorEnv, numpy CartPole) against shoal's Python
path (make_env in a SyncVectorEnv), on the same seeds and the same random actions: the
same spaces, the same autoreset contract, clipped rewards for training and true returns
for the log, life losses as terminations while the game plays on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from shoal.actors.envs import env_spec, episode_returns, make_vector_env

ENVS = 2


@dataclass
class Played:
    """What a random-action run of one path showed."""

    obs: list[np.ndarray] = field(default_factory=list)        # after reset and each step
    rewards: list[np.ndarray] = field(default_factory=list)
    terminated: list[np.ndarray] = field(default_factory=list)
    truncated: list[np.ndarray] = field(default_factory=list)
    final_obs: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # step, env
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # step, return, len
    lives: list[np.ndarray] = field(default_factory=list)
    spec: Any = None


def play(env_id: str, native: bool, training: bool, games: int, seed: int = 3,
         max_steps: int = 20_000) -> Played:
    """Random actions (seeded, the same sequence for both paths) until ``games`` games
    ended; a step bound only stops a run that would never end."""
    envs = make_vector_env(env_id, ENVS, seed, training=training, native=native)
    played = Played(spec=env_spec(envs))
    rng = np.random.default_rng(seed)
    try:
        obs, _ = envs.reset(seed=seed)
        played.obs.append(obs.copy())
        for step in range(max_steps):
            actions = rng.integers(0, envs.single_action_space.n, ENVS)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            for name, value in (("obs", obs), ("rewards", rewards),
                                ("terminated", terminated), ("truncated", truncated)):
                getattr(played, name).append(np.array(value))
            played.lives.append(np.array(lives_of(envs, info)))
            for env in np.flatnonzero(terminated | truncated):
                played.final_obs.append((step, int(env), np.array(info["final_obs"][env])))
            played.episodes += [(step, r, n) for r, n in episode_returns(info)]
            if len(played.episodes) >= games:
                return played
    finally:
        envs.close()
    raise AssertionError(f"{games} games did not end in {max_steps} steps")


def lives_of(envs: Any, info: dict[str, Any]) -> list[int]:
    if "lives" in info and not isinstance(info["lives"], dict):
        return [int(x) for x in info["lives"]]
    return [int(env.unwrapped.ale.lives()) for env in envs.envs]


def four_copies(stack: np.ndarray) -> bool:
    return all(np.array_equal(stack[0], frame) for frame in stack[1:])


@pytest.fixture(scope="module", params=[False, True], ids=["python", "native"])
def breakout(request: pytest.FixtureRequest) -> Played:
    return play("ALE/Breakout-v5", native=request.param, training=True, games=2)


def test_both_atari_paths_have_the_same_spaces() -> None:
    python, native = (make_vector_env("ALE/Pong-v5", ENVS, 0, native=flag) for flag in
                      (False, True))
    try:
        assert type(native).__name__ == "NativeAtariVectorEnv"
        assert env_spec(native) == env_spec(python)
        assert env_spec(native).observation_shape == (4, 84, 84)
        assert env_spec(native).observation_dtype == "uint8"
        obs_python, _ = python.reset(seed=0)
        obs_native, _ = native.reset(seed=0)
        assert obs_native.shape == obs_python.shape == (ENVS, 4, 84, 84)
        assert obs_native.dtype == obs_python.dtype == np.uint8
        # both start a game from a stack of four copies of its first frame, not zeros
        assert all(four_copies(stack) and stack.any() for stack in obs_native)
        assert all(four_copies(stack) and stack.any() for stack in obs_python)
    finally:
        python.close()
        native.close()


def test_training_rewards_are_clipped_and_lost_lives_terminate(breakout: Played) -> None:
    rewards = np.concatenate(breakout.rewards)
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
    assert rewards.max() == 1.0  # random Breakout play scores a little
    lives = np.stack(breakout.lives)
    terminated = np.stack(breakout.terminated)
    ended_games = {step for step, *_ in breakout.episodes}
    life_losses = [(step, env) for step, env in zip(*np.nonzero(terminated), strict=True)
                   if step not in ended_games]
    # a life lost mid-game ends the training episode: many more terminations than games
    assert len(life_losses) >= 4
    for step, env in life_losses:
        assert lives[step, env] > 0 and lives[step, env] < lives[step - 1, env]
        # the next life starts from a fresh stack, as a new game does
        assert four_copies(breakout.obs[step + 1][env])


def test_a_lost_life_keeps_its_last_frames_as_final_obs(breakout: Played) -> None:
    assert breakout.final_obs
    for step, env, final in breakout.final_obs:
        assert final.shape == (4, 84, 84) and final.dtype == np.uint8
        # what the episode ended on: the stack before the last step, shifted by one frame
        # (the next episode's first stack is four copies of one frame instead)
        assert np.array_equal(final[:-1], breakout.obs[step][env][1:])


def test_returns_are_the_games_true_scores_whatever_the_path() -> None:
    """Unclipped rewards (training=False) summed over a whole game are the return each
    path reports for it; training's clipped rewards are never what is reported."""
    for native in (False, True):
        played = play("ALE/Breakout-v5", native=native, training=False, games=2)
        rewards = np.stack(played.rewards)
        done = np.stack(played.terminated) | np.stack(played.truncated)
        for step, env_return, length in played.episodes:
            env = next(e for e in range(ENVS) if done[step, e])
            start = max((s + 1 for s in range(step) if done[s, env]), default=0)
            assert length == step + 1 - start
            assert env_return == pytest.approx(rewards[start:step + 1, env].sum())
        assert {float(r) for r in np.concatenate(played.rewards)} - {0.0} <= {1.0, 4.0, 7.0}


def test_random_pong_scores_alike_on_both_paths() -> None:
    scores = {native: [r for _, r, _ in play("ALE/Pong-v5", native, True, games=2).episodes]
              for native in (False, True)}
    for native, returns in scores.items():
        assert all(-21 <= r <= -15 for r in returns), (native, returns)


def test_cartpole_native_keeps_same_step_autoreset() -> None:
    envs = make_vector_env("CartPole-v1", 8, seed=0)
    python = make_vector_env("CartPole-v1", 8, seed=0, native=False)
    try:
        assert type(envs).__name__ == "SameStepCartPole"
        assert env_spec(envs) == env_spec(python)
        obs, _ = envs.reset(seed=0)
        rng = np.random.default_rng(0)
        lengths: list[int] = []
        for _ in range(400):
            previous = obs
            obs, rewards, terminated, truncated, info = envs.step(rng.integers(0, 2, 8))
            assert obs.dtype == np.float32 and (rewards == 1.0).all()
            done = terminated | truncated
            if done.any():
                final = info["final_obs"]
                # the last observation is the terminal one; the returned one is a fresh
                # start (|state| <= 0.05), not a wasted NEXT_STEP reset step
                assert np.abs(obs[done]).max() <= 0.05
                for env in np.flatnonzero(terminated):
                    x, _, theta, _ = final[env]
                    assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
                assert not np.array_equal(final[done], previous[done])
                lengths += [length for _, length in episode_returns(info)]
        assert len(lengths) > 20 and min(lengths) >= 8 and max(lengths) <= 500
    finally:
        envs.close()
        python.close()
