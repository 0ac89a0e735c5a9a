"""Claims a client makes about sizes (dtype, shape, compressed lengths, counts) are checked
before they cost memory or time: decompression bombs, overflowing shapes, unbounded draws."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import grpc
import lz4.block
import numpy as np
import pytest
import yaml

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.transport import bearer_metadata
from shoal.replay_service import (
    FieldSpec,
    MinSize,
    OldestFirst,
    Prioritized,
    ReplayClient,
    ReplayServer,
    Table,
)
from shoal.replay_service.process import SpawnedReplayServer
from shoal.replay_service.server import MAX_ITEMS_PER_CALL

from ..conftest import TOKEN, frames
from .fuzz_messages import zstd_bomb
from .test_table import assert_state_equal

GIGABYTE = 10**9
ATARI = {"frames": FieldSpec("uint8", (84, 84), "zstd"), "action": FieldSpec("int64", ())}


def compressed_frames_request(rows: list[bytes], shape: list[int], compression: int,
                              table: str = "atari") -> replay_pb2.InsertRequest:
    request = replay_pb2.InsertRequest(table=table)
    tensor = request.columns["frames"]
    tensor.dtype, tensor.compression = "uint8", compression
    tensor.shape[:] = shape
    tensor.rows.extend(rows)
    codec.encode_tensor(np.arange(shape[0], dtype=np.int64), out=request.columns["action"])
    return request


def refusal(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Insert(iter([request]), metadata=bearer_metadata(TOKEN)))
    return raised.value


# --------------------------------------------------------------------- bombs, in a process

def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


@pytest.fixture(scope="module")
def atari_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bombs")
    config = tmp_path / "tables.yaml"
    config.write_text(yaml.safe_dump({"tables": [{
        "name": "atari", "max_size": 1000,
        "selector": {"type": "uniform"}, "rate_limiter": {"type": "min_size", "min_size": 1},
        "signature": {"frames": {"dtype": "uint8", "shape": [84, 84], "compression": "zstd"},
                      "action": {"dtype": "int64", "shape": []}},
    }, {
        "name": "plain", "max_size": 1000,
        "selector": {"type": "uniform"}, "rate_limiter": {"type": "min_size", "min_size": 1},
        "signature": {"frames": {"dtype": "uint8", "shape": [84, 84]},
                      "action": {"dtype": "int64", "shape": []}},
    }]}))
    with SpawnedReplayServer(config, tmp_path / "server") as server:
        yield server


BOMBS = {  # (table, rows, claimed shape)
    # 29 KB claiming uint8[1, 10^9] for a field stored uncompressed: was decompressed whole.
    "claimed shape, uncompressed field": lambda: (
        "plain", [zstd_bomb(GIGABYTE, with_content_size=True)], [1, GIGABYTE]),
    # The same claim for the zstd field.
    "claimed shape": lambda: (
        "atari", [zstd_bomb(GIGABYTE, with_content_size=True)], [1, GIGABYTE]),
    # The right claim, a frame whose header says a gigabyte.
    "frame header": lambda: (
        "atari", [zstd_bomb(GIGABYTE, with_content_size=True)], [1, 84, 84]),
    # The right claim, a frame that does not say its size and expands to a gigabyte.
    "unsized frame": lambda: (
        "atari", [zstd_bomb(GIGABYTE, with_content_size=False)], [1, 84, 84]),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_a_decompression_bomb_is_refused_within_10_mb_of_idle(atari_server, case):
    table, rows, shape = BOMBS[case]()
    assert len(rows[0]) < 64 * 1024
    good_frames = np.zeros((4, 84, 84), np.uint8)
    with ReplayClient(atari_server.address, atari_server.token) as client:
        with client.writer("atari") as writer:  # warms the server's buffers and threads
            writer.extend({"frames": good_frames, "action": np.arange(4)})
        before = client.info()["atari"]
        with grpc.insecure_channel(atari_server.address) as channel:
            stub = replay_pb2_grpc.ReplayServiceStub(channel)
            list(stub.Insert(iter([compressed_frames_request(
                codec.compress_rows(good_frames[:1], "zstd"), [1, 84, 84],
                replay_pb2.COMPRESSION_ZSTD)]), metadata=bearer_metadata(atari_server.token)))
            _reset_peak_rss(atari_server.process.pid)
            idle_kb = _peak_rss_kb(atari_server.process.pid)  # the RSS now
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Insert(iter([compressed_frames_request(
                    rows, shape, replay_pb2.COMPRESSION_ZSTD, table)]),
                    metadata=bearer_metadata(atari_server.token)))
            peak_kb = _peak_rss_kb(atari_server.process.pid)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "frames:" in raised.value.details()
        print(f"{case}: peak RSS {peak_kb - idle_kb} kB above idle")
        assert peak_kb - idle_kb <= 10 * 1024, f"peak RSS {peak_kb - idle_kb} kB above idle"
        after = client.info()["atari"]
        assert after.inserted_items == before.inserted_items + 1  # the good one only
        with client.sample("atari", 2, num_batches=1) as batches:
            assert next(iter(batches)).columns["frames"].shape == (2, 84, 84)


# ------------------------------------------------------------------- in-process refusals

@pytest.fixture
def server(tmp_path):
    tables = [Table("atari", Prioritized(0.6), OldestFirst(), 1000, MinSize(1), ATARI),
              Table("lz4", Prioritized(0.6), OldestFirst(), 100, MinSize(1),
                    {"frames": FieldSpec("uint8", (16, 16, 4), "lz4"),
                     "action": FieldSpec("int64", ())}),
              Table("plain", Prioritized(0.6), OldestFirst(), 100, MinSize(1),
                    {"frames": FieldSpec("uint8", (16, 16, 4)), "action": FieldSpec("int64", ())}),
              Table("big", Prioritized(0.6), OldestFirst(), 2 * MAX_ITEMS_PER_CALL, MinSize(1),
                    {"x": FieldSpec("float32", ())})]
    with ReplayServer(tables, token=TOKEN) as running:
        yield running


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield replay_pb2_grpc.ReplayServiceStub(channel)


def _lz4_claim(per_row: int, table: str = "lz4") -> replay_pb2.InsertRequest:
    blob = lz4.block.compress(bytes(1024), store_size=False)
    return compressed_frames_request([blob], [1, per_row], replay_pb2.COMPRESSION_LZ4, table)


REFUSED = {
    # Used to escape the codec as OverflowError: UNKNOWN and a traceback in the server log.
    "lz4 claiming 10^9 per row": (_lz4_claim(GIGABYTE), "frames: expected uint8"),
    "lz4 claiming 2^62 per row": (_lz4_claim(2**62), "frames: expected uint8"),
    "lz4 claiming 10^9 per row, uncompressed field": (
        _lz4_claim(GIGABYTE, "plain"), "frames: expected uint8"),
    "lz4 claiming 2^40 per row, uncompressed field": (
        _lz4_claim(2**40, "plain"), "frames: expected uint8"),
    "lz4 rows for an uncompressed field": (compressed_frames_request(
        codec.compress_rows(np.zeros((1, 16, 16, 4), np.uint8), "lz4"), [1, 16, 16, 4],
        replay_pb2.COMPRESSION_LZ4, "plain"), "frames: lz4 rows for a field the table stores"),
    "lz4 rows for a zstd field": (compressed_frames_request(
        codec.compress_rows(np.zeros((1, 84, 84), np.uint8), "lz4"), [1, 84, 84],
        replay_pb2.COMPRESSION_LZ4), "frames: lz4 rows for a field the table stores as"),
    "more rows than claimed": (compressed_frames_request(
        codec.compress_rows(np.zeros((3, 84, 84), np.uint8), "zstd"), [2, 84, 84],
        replay_pb2.COMPRESSION_ZSTD), "frames: 3 compressed rows, expected 2"),
    "a row of another size": (compressed_frames_request(
        codec.compress_rows(np.zeros((1, 84, 83), np.uint8), "zstd"), [1, 84, 84],
        replay_pb2.COMPRESSION_ZSTD), "frames: .*claims 6972 bytes, expected 7056"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_claims_that_do_not_fit_are_invalid_argument_naming_the_field(
        server, stub, case, caplog):
    request, pattern = REFUSED[case]
    before = {name: table.state() for name, table in server.tables.items()}
    with caplog.at_level(logging.WARNING):
        error = refusal(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert re.search(pattern, error.details()), error.details()
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"
    for name, table in server.tables.items():
        assert_state_equal(before[name], table.state())


def test_insert_priorities_are_checked_before_they_are_decoded(server, stub):
    request = replay_pb2.InsertRequest(table="big")
    codec.encode_tensor(np.ones(2, np.float32), out=request.columns["x"])
    priorities = request.priorities
    priorities.dtype, priorities.compression = "float64", replay_pb2.COMPRESSION_ZSTD
    priorities.shape[:] = [2, 10**12]
    priorities.rows.extend([zstd_bomb(1 << 20, with_content_size=False)] * 2)
    error = refusal(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "priorities: expected float32|float64[items, *[]], got float64[2, 1000000000000]" \
        in error.details()
    assert server.tables["big"].size == 0


def test_an_insert_of_more_than_max_items_per_call_is_refused(server, stub):
    request = replay_pb2.InsertRequest(table="big")
    codec.encode_tensor(np.ones(MAX_ITEMS_PER_CALL + 1, np.float32), out=request.columns["x"])
    error = refusal(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"expected 1..MAX_ITEMS_PER_CALL ({MAX_ITEMS_PER_CALL}) items" in error.details()


def _update(stub, keys: replay_pb2.Tensor, priorities: replay_pb2.Tensor) -> grpc.RpcError:
    request = replay_pb2.UpdatePrioritiesRequest(table="big")
    request.keys.CopyFrom(keys)
    request.priorities.CopyFrom(priorities)
    with pytest.raises(grpc.RpcError) as raised:
        stub.UpdatePriorities(request, metadata=bearer_metadata(TOKEN))
    return raised.value


def _claim(dtype: str, shape: list[int], rows: list[bytes]) -> replay_pb2.Tensor:
    tensor = replay_pb2.Tensor(dtype=dtype, compression=replay_pb2.COMPRESSION_LZ4)
    tensor.shape[:] = shape
    tensor.rows.extend(rows)
    return tensor


@pytest.mark.parametrize(("keys", "priorities", "pattern"), [
    (_claim("int64", [1, 10**9], [b"\x00"]), codec.encode_tensor(np.ones(1)),
     r"keys: expected int32\|int64\|uint32\|uint64\[items, \*\[\]\], got int64\[1, 1000000000\]"),
    (codec.encode_tensor(np.arange(MAX_ITEMS_PER_CALL + 1)),
     codec.encode_tensor(np.ones(MAX_ITEMS_PER_CALL + 1)), "keys: expected at most 65536 keys"),
    (codec.encode_tensor(np.arange(2)), _claim("float64", [2**40], [b"\x00"]),
     r"priorities: expected 2 numbers \(one per key\), got 1099511627776"),
    (codec.encode_tensor(np.arange(2)), _claim("float64", [2], [b"\x00", b"\x00"]),
     "priorities: a row decompresses to 0 bytes, expected 8"),
])
def test_priority_updates_get_the_same_checks_and_caps(server, stub, keys, priorities, pattern):
    before = server.tables["big"].state()
    error = _update(stub, keys, priorities)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(pattern, error.details()), error.details()
    assert_state_equal(before, server.tables["big"].state())


def test_one_draw_touches_at_most_max_items_per_call(server):
    with ReplayClient(server.address, TOKEN) as client:
        with client.writer("big") as writer:
            writer.extend({"x": np.ones(10, np.float32)})
        batch_size = 4096
        with client.sample("big", batch_size, prefetch=64, num_batches=1) as batches:
            assert next(iter(batches)).keys.size == batch_size
        sampled = server.tables["big"].stats().sampled_items
        # 64 batches of 4096 asked for at once: drawn MAX_ITEMS_PER_CALL items at a time.
        with client.sample("big", batch_size, prefetch=64, num_batches=64) as batches:
            received = sum(batch.keys.size for batch in batches)
    assert received == 64 * batch_size
    assert server.tables["big"].stats().sampled_items - sampled == received


# ---------------------------------------------------------------------------- the codec

@pytest.mark.parametrize("shape", [[1, 2**40], [2**31, 1], [1, 2**62, 4]])
def test_the_codec_turns_every_decoding_failure_into_a_codec_error(shape):
    tensor = _claim("uint8", shape, [lz4.block.compress(b"abc", store_size=False)])
    with pytest.raises(codec.CodecError):
        codec.decode_tensor(tensor, "field")


def test_a_receiver_cap_refuses_a_claim_before_allocating():
    tensor = replay_pb2.Tensor(dtype="float64", compression=replay_pb2.COMPRESSION_ZSTD)
    tensor.shape[:] = [1, 10**9]
    tensor.rows.append(zstd_bomb(8 * 10**9 // 1000, with_content_size=True))
    with pytest.raises(codec.CodecError, match="more than the 800 this receiver accepts"):
        codec.decode_tensor(tensor, "field", max_bytes=800)


def test_good_compressed_inserts_still_round_trip(server):
    with ReplayClient(server.address, TOKEN) as client:
        data = frames(5)
        with client.writer("lz4") as writer:
            writer.extend(data)
        with client.sample("lz4", 5, num_batches=1) as batches:
            batch = next(iter(batches))
    np.testing.assert_array_equal(batch.columns["frames"], data["frames"][batch.columns["action"]])



# ---------------------------------------------------------------- calls beyond capacity

def test_calls_beyond_a_servers_threads_are_refused_not_queued():
    """Every open stream holds a server thread: one client opening more streams than there
    are threads used to queue later calls (a new actor's, the learner's) behind them."""
    from shoal.learner.parameter_service import ParameterServer
    from shoal.protos import parameters_pb2, parameters_pb2_grpc

    with ParameterServer(token=TOKEN, max_workers=2) as weights, \
            grpc.insecure_channel(weights.address) as channel:
        weights.publish({"w": np.zeros(3, np.float32)})
        stub = parameters_pb2_grpc.ParameterServiceStub(channel)
        streams = [stub.Watch(parameters_pb2.WatchRequest(), metadata=bearer_metadata(TOKEN))
                   for _ in range(2)]
        for stream in streams:
            assert next(stream).version == 1  # both hold a thread now
        with pytest.raises(grpc.RpcError) as raised:
            next(stub.Watch(parameters_pb2.WatchRequest(), metadata=bearer_metadata(TOKEN),
                            timeout=30))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streams[0].cancel()
        weights.publish({"w": np.ones(3, np.float32)})
        # A thread freed is a thread the next caller gets (once the cancel has reached it).
        deadline = time.monotonic() + 60
        while True:
            fresh = stub.Watch(parameters_pb2.WatchRequest(), metadata=bearer_metadata(TOKEN))
            try:
                assert next(fresh).version == 2
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "no thread came back after a cancel"
                time.sleep(0.05)
        for stream in (*streams, fresh):
            stream.cancel()
