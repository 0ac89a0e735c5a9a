"""Frames stored once (actors/frames.py, replay_service/frames.py) against the
straightforward storage of whole stacks, on recorded Atari play: the same transitions, the
same tensors for each, episode and life boundaries included, and eviction that frees
exactly the frames no live transition needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.actors.adders import NStepTransitionAdder
from shoal.actors.envs import make_vector_env
from shoal.actors.frames import FrameStreams
from shoal.protos import codec
from shoal.replay_service.frames import FrameStore

ENVS = 2


def record(env_id: str, steps: int, native: bool = True) -> dict[str, Any]:
    """Random play through two n-step adders fed the same steps: one given stacks, one
    given the stacks' frame ids; their transitions come out in the same order."""
    envs = make_vector_env(env_id, ENVS, seed=5, native=native)
    streams = FrameStreams(ENVS)
    plain, by_id = (NStepTransitionAdder(ENVS, 3, 0.99) for _ in range(2))
    rng = np.random.default_rng(5)
    episodes = 0
    try:
        obs, _ = envs.reset(seed=5)
        ids = streams.start(obs)
        for _ in range(steps):
            actions = rng.integers(0, envs.single_action_space.n, ENVS)
            next_obs, rewards, terminated, truncated, info = envs.step(actions)
            done = terminated | truncated
            episodes += int(done.sum())
            next_ids, final_ids = streams.step(next_obs, done, info.get("final_obs"))
            plain.add(obs, actions, rewards, next_obs, terminated, truncated,
                      info.get("final_obs"), version=0)
            by_id.add(ids, actions, rewards, next_ids, terminated, truncated, final_ids,
                      version=0)
            obs, ids = next_obs, next_ids
    finally:
        envs.close()
    frame_ids, frames = streams.take()
    plain_taken, by_id_taken = plain.take(), by_id.take()
    assert plain_taken is not None and by_id_taken is not None
    plain_items, by_id_items = plain_taken[0], by_id_taken[0]
    return {"plain": plain_items, "ids": by_id_items, "frame_ids": frame_ids,
            "frames": frames, "episodes": episodes, "steps": steps}


def stored(recorded: dict[str, Any]) -> FrameStore:
    store = FrameStore((84, 84))
    store.add(recorded["frame_ids"], recorded["frames"])
    store.retain(recorded["ids"]["obs"])
    store.retain(recorded["ids"]["next_obs"])
    return store


@pytest.fixture(scope="module")
def breakout() -> dict[str, Any]:
    return record("ALE/Breakout-v5", 700)


@pytest.fixture(scope="module")
def pong() -> dict[str, Any]:
    return record("ALE/Pong-v5", 400)


def test_stacks_rebuilt_from_ids_are_the_stored_stacks(breakout: dict[str, Any]) -> None:
    plain, ids = breakout["plain"], breakout["ids"]
    assert breakout["episodes"] >= 6  # lost lives and games over, in both envs
    assert ids["obs"].shape == (len(plain["obs"]), 4) and ids["obs"].dtype == np.int64
    store = stored(breakout)
    np.testing.assert_array_equal(store.stacks(ids["obs"]), plain["obs"])
    np.testing.assert_array_equal(store.stacks(ids["next_obs"]), plain["next_obs"])
    for name in ("action", "reward", "discount"):
        np.testing.assert_array_equal(ids[name], plain[name])
    # a terminal transition bootstraps from its episode's last stack, not the next start
    ended = plain["discount"] == 0
    assert ended.any()
    np.testing.assert_array_equal(store.stacks(ids["next_obs"][ended]),
                                  plain["next_obs"][ended])


def test_episode_starts_are_one_frame_four_times(breakout: dict[str, Any]) -> None:
    ids = breakout["ids"]["obs"]
    starts = ids[(ids == ids[:, :1]).all(axis=1)]
    assert len(starts) >= breakout["episodes"]  # every episode's (and life's) first step
    plain = breakout["plain"]["obs"][(ids == ids[:, :1]).all(axis=1)]
    assert all((stack == stack[0]).all() for stack in plain)


def test_eviction_frees_what_no_live_transition_needs(breakout: dict[str, Any]) -> None:
    store = stored(breakout)
    ids, plain = breakout["ids"], breakout["plain"]
    frames_before = len(store)
    half = len(plain["obs"]) // 2
    store.release(ids["obs"][:half])
    store.release(ids["next_obs"][:half])
    assert len(store) < frames_before
    np.testing.assert_array_equal(store.stacks(ids["obs"][half:]), plain["obs"][half:])
    np.testing.assert_array_equal(store.stacks(ids["next_obs"][half:]),
                                  plain["next_obs"][half:])
    live = set(ids["obs"][half:].ravel()) | set(ids["next_obs"][half:].ravel())
    store.drop_unreferenced()  # the frames of steps still pending in the adder
    assert len(store) == len(live)
    store.release(ids["obs"][half:])
    store.release(ids["next_obs"][half:])
    assert len(store) == 0 and store.stored_bytes == 0
    with pytest.raises(KeyError, match="not stored"):
        store.retain(ids["obs"][:1])


def test_a_frame_is_stored_once_per_step_and_halves_the_bytes(pong: dict[str, Any]) -> None:
    plain, ids = pong["plain"], pong["ids"]
    store = stored(pong)
    # one new frame per env step, plus the first stack of each stream
    assert len(store) <= ENVS * (pong["steps"] + 4)
    stacked = sum(len(row) for name in ("obs", "next_obs")
                  for row in codec.compress_rows(plain[name], "lz4"))
    per_transition_plain = stacked / len(plain["obs"])
    per_transition_frames = (store.stored_bytes + ids["obs"].nbytes
                             + ids["next_obs"].nbytes) / len(plain["obs"])
    assert per_transition_frames <= per_transition_plain / 2, (
        per_transition_frames, per_transition_plain)
