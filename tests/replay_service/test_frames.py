"""Frames fields (each distinct frame stored once) against the straightforward storage of
whole compressed stacks, on recorded Atari play: two tables, one of each, given the same
transitions and seeds, sample the same keys and the same tensors, in process, over gRPC
and after a checkpoint; eviction frees exactly the frames no live transition needs; and a
message whose frames do not fit its items changes nothing."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from shoal.actors.adders import NStepTransitionAdder
from shoal.actors.envs import make_vector_env
from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.frames import decode_stacks, split_frames
from shoal.protos.tables import FieldSpec, FrameKind, MinSize, OldestFirst, Prioritized
from shoal.protos.transport import bearer_metadata
from shoal.replay_service import ReplayClient, ReplayServer, Table
from shoal.replay_service.messages import encode_sample
from shoal.replay_service.sampling import decode_sample

from ..conftest import TOKEN

ENVS = 2
STACK = FieldSpec("uint8", (4, 84, 84), "lz4")
FRAMES = FieldSpec("uint8", (4, 84, 84), "lz4", frames=True)


def record(env_id: str, steps: int) -> dict[str, np.ndarray]:
    """Random play's n-step transitions, as an actor's adder makes them."""
    envs = make_vector_env(env_id, ENVS, seed=5)
    adder = NStepTransitionAdder(ENVS, 3, 0.99)
    rng = np.random.default_rng(5)
    try:
        obs, _ = envs.reset(seed=5)
        for _ in range(steps):
            actions = rng.integers(0, envs.single_action_space.n, ENVS)
            next_obs, rewards, terminated, truncated, info = envs.step(actions)
            adder.add(obs, actions, rewards, next_obs, terminated, truncated,
                      info.get("final_obs"), version=0)
            obs = next_obs
    finally:
        envs.close()
    taken = adder.take()
    assert taken is not None
    return taken[0]


def table(name: str, obs: FieldSpec, max_size: int, queue: bool = False) -> Table:
    signature = {"obs": obs, "action": FieldSpec("int64"), "reward": FieldSpec("float32"),
                 "next_obs": obs, "discount": FieldSpec("float32")}
    if queue:
        return Table.queue(name, max_size, signature)
    return Table(name, Prioritized(0.6), OldestFirst(), max_size, MinSize(1), signature,
                 seed=3)


def fields(items: dict[str, np.ndarray], part: slice = slice(None)) -> dict[str, np.ndarray]:
    return {name: items[name][part] for name in ("obs", "action", "reward", "next_obs",
                                                 "discount")}


def fill(tables: list[Table], items: dict[str, np.ndarray], per_message: int = 64) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, len(items["obs"]), per_message):
        part = slice(start, start + per_message)
        priorities = rng.uniform(0.1, 2.0, len(items["obs"][part]))
        for each in tables:
            each.insert(fields(items, part), priorities)


def distinct_frames(stacks: list[np.ndarray]) -> int:
    return len({frame.tobytes() for array in stacks for frame in array.reshape(-1, 84, 84)})


def assert_same_draws(plain: Table, frames: Table, draws: int = 5) -> None:
    for _ in range(draws):
        expected, got = plain.sample(64), frames.sample(64)
        np.testing.assert_array_equal(got.keys, expected.keys)
        np.testing.assert_array_equal(got.probabilities, expected.probabilities)
        for name, column in expected.columns.items():
            np.testing.assert_array_equal(got.columns[name], column, err_msg=name)


@pytest.fixture(scope="module")
def breakout() -> dict[str, np.ndarray]:
    return record("ALE/Breakout-v5", 700)


@pytest.fixture(scope="module")
def pong() -> dict[str, np.ndarray]:
    return record("ALE/Pong-v5", 400)


def test_frames_fields_sample_what_whole_stacks_do(breakout: dict[str, np.ndarray]) -> None:
    ended = breakout["discount"] == 0
    assert ended.sum() >= 6  # lost lives and games over, in both envs
    starts = (breakout["obs"] == breakout["obs"][:, :1]).all(axis=(1, 2, 3))
    # each new life starts as one frame four times (an end makes up to n = 3 terminals)
    assert starts.sum() >= ended.sum() / 3
    plain, frames = table("plain", STACK, 4096), table("frames", FRAMES, 4096)
    fill([plain, frames], breakout)
    assert_same_draws(plain, frames)
    everything = frames.sample(len(breakout["obs"]))
    terminal = everything.columns["discount"] == 0
    assert terminal.any()  # and a terminal transition's next_obs is its episode's last stack
    for name in ("obs", "next_obs"):
        np.testing.assert_array_equal(everything.columns[name],
                                      breakout[name][everything.keys], err_msg=name)
    assert frames.stats().stored_frames == distinct_frames([breakout["obs"],
                                                            breakout["next_obs"]])


def test_eviction_frees_exactly_what_no_live_transition_needs(
        breakout: dict[str, np.ndarray]) -> None:
    plain, frames = table("plain", STACK, 300), table("frames", FRAMES, 300)
    fill([plain, frames], breakout, per_message=50)  # the ring comes round several times
    oldest = len(breakout["obs"]) - 300  # the live items: the last 300 inserted
    assert frames.size == 300 and oldest > 300
    assert frames.stats().stored_frames == distinct_frames(
        [breakout["obs"][oldest:], breakout["next_obs"][oldest:]])
    assert_same_draws(plain, frames)
    # a queue hands each item out once: when every item has left, every frame has too
    queue = table("queue", FRAMES, 4096, queue=True)
    fill([queue], breakout)
    total = queue.size
    drawn = queue.sample(total // 2).keys.size + queue.sample(total - total // 2).keys.size
    stats = queue.stats()
    assert (drawn, stats.size, stats.stored_frames, stats.stored_bytes) == (total, 0, 0, 0)


def test_a_checkpoint_keeps_frames_and_their_references(
        breakout: dict[str, np.ndarray]) -> None:
    plain, frames = table("plain", STACK, 500), table("frames", FRAMES, 500)
    fill([plain, frames], breakout, per_message=100)
    restored = table("frames", FRAMES, 500)
    restored.restore(frames.state())
    assert restored.stats().stored_frames == frames.stats().stored_frames
    assert restored.stats().stored_bytes == frames.stats().stored_bytes
    # further inserts evict restored items: their frames' counts must be the right ones
    more = fields(breakout, slice(0, 400))
    for each in (plain, restored):
        each.insert(more, np.ones(400))
    assert restored.stats().stored_frames == distinct_frames(
        [np.concatenate([breakout[name][-100:], more[name]]) for name in ("obs", "next_obs")])
    assert_same_draws(plain, restored)


def test_a_pong_transition_costs_under_half_over_grpc(pong: dict[str, np.ndarray]) -> None:
    with ReplayServer([table("plain", STACK, 4096), table("frames", FRAMES, 4096)],
                      token=TOKEN) as server, ReplayClient(server.address, TOKEN) as client:
        client.wait_ready(30)
        for name in ("plain", "frames"):
            with client.writer(name, max_items_per_message=64) as writer:
                writer.extend(fields(pong), priorities=np.ones(len(pong["obs"])))
        info = client.info()
        assert info["frames"].signature["obs"].frames
        assert info["plain"].size == info["frames"].size == len(pong["obs"])
        plain_bytes = info["plain"].stored_bytes / info["plain"].size
        frames_bytes = info["frames"].stored_bytes / info["frames"].size
        assert frames_bytes <= plain_bytes / 2, (frames_bytes, plain_bytes)
        # one new frame per env step, plus each env's first stack
        assert info["frames"].stored_frames <= ENVS * (400 + 4)
        with client.sample("plain", 32, num_batches=4, prefetch=2) as expected, \
                client.sample("frames", 32, num_batches=4, prefetch=2,
                              reuse_buffers=3, decode_threads=2) as got:
            for want, have in zip(expected, got, strict=True):
                np.testing.assert_array_equal(have.keys, want.keys)
                for name, column in want.columns.items():
                    np.testing.assert_array_equal(have.columns[name], column, err_msg=name)


def frames_request(items: dict[str, np.ndarray]) -> replay_pb2.InsertRequest:
    """An InsertRequest as a writer makes one for the frames table."""
    blobs, indices = split_frames({"obs": items["obs"], "next_obs": items["next_obs"]}, "lz4")
    request = replay_pb2.InsertRequest(table="frames")
    codec.encode_rows(blobs, np.dtype("uint8"), (84, 84), "lz4", out=request.frames)
    codec.encode_columns({**items, **indices}, request.columns)
    return request


def test_frames_that_do_not_fit_their_items_are_refused_whole(
        pong: dict[str, np.ndarray]) -> None:
    good = fields(pong, slice(0, 8))
    with ReplayServer([table("frames", FRAMES, 100)], token=TOKEN) as server, \
            grpc.insecure_channel(server.address) as channel:
        stub = replay_pb2_grpc.ReplayServiceStub(channel)
        list(stub.Insert(iter([frames_request(good)]), metadata=bearer_metadata(TOKEN)))
        before = server.tables["frames"].stats()

        def corrupt(request: replay_pb2.InsertRequest) -> None:
            request.frames.rows[0] = b"\x00not lz4"

        def out_of_range(request: replay_pb2.InsertRequest) -> None:
            codec.encode_tensor(np.full((8, 4), len(request.frames.rows), np.int32),
                                out=request.columns["obs"])

        def missing(request: replay_pb2.InsertRequest) -> None:
            request.ClearField("frames")

        def stacks_in_place_of_indices(request: replay_pb2.InsertRequest) -> None:
            codec.encode_tensor(good["obs"], "lz4", out=request.columns["obs"])

        cases: list[tuple[Any, str]] = [(corrupt, "frames"), (out_of_range, "obs"),
                                        (missing, "frames"),
                                        (stacks_in_place_of_indices, "obs")]
        for damage, field in cases:
            request = frames_request(good)
            damage(request)
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Insert(iter([request]), metadata=bearer_metadata(TOKEN)))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = raised.value.details()
            assert details.startswith(f"table 'frames': {field}:"), details
            after = server.tables["frames"].stats()
            assert (after.size, after.stored_frames, after.stored_bytes) == (
                before.size, before.stored_frames, before.stored_bytes)


def test_stacks_decode_as_a_gather_of_the_frames_does(pong: dict[str, np.ndarray]) -> None:
    kind = FrameKind((84, 84), np.dtype("uint8"), "lz4")
    stacks = {"obs": pong["obs"][:40], "next_obs": pong["next_obs"][:40]}
    blobs, indices = split_frames(stacks, "lz4")
    frames = np.stack([np.frombuffer(codec.decompress_row(blob, "lz4", kind.row_bytes),
                                     np.uint8).reshape(84, 84) for blob in blobs])
    reused = np.full((2 * 40 * 4, 84, 84), 7, np.uint8)  # a buffer with old contents
    got = decode_stacks(blobs, kind, indices, reused)
    for name, want in stacks.items():
        np.testing.assert_array_equal(got[name], frames[indices[name]], err_msg=name)
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert np.shares_memory(got[name], reused)


def test_a_sample_whose_frames_do_not_fit_is_refused_by_field(
        pong: dict[str, np.ndarray]) -> None:
    items = table("frames", FRAMES, 100)
    items.insert(fields(pong, slice(0, 16)), np.ones(16))
    response = encode_sample(items.sample(8, decompress=False), items, 8)

    def corrupt(message: replay_pb2.SampleResponse) -> None:
        message.frames.rows[0] = b"\x00not lz4"

    def out_of_range(message: replay_pb2.SampleResponse) -> None:
        codec.encode_tensor(np.full((8, 4), len(message.frames.rows), np.int32),
                            out=message.columns["next_obs"])

    def rows_short(message: replay_pb2.SampleResponse) -> None:
        del message.frames.rows[-1]

    for damage in (corrupt, out_of_range, rows_short):
        damaged = replay_pb2.SampleResponse()
        damaged.CopyFrom(response)
        damage(damaged)
        with pytest.raises(codec.CodecError) as raised:
            decode_sample(damaged, {})
        assert raised.value.field == "frames", (damage.__name__, raised.value)
