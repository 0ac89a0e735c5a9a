"""Every RPC over a real gRPC server on a loopback ephemeral port."""

import contextlib
import re
import threading

import grpc
import numpy as np
import pytest

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.transport import bearer_metadata
from shoal.replay_service import ReplayClient, ReplayServer, Table, WriterError

from ..conftest import (
    CARTPOLE_SIGNATURE,
    TOKEN,
    frames,
    prioritized_table,
    service_tables,
    transitions,
    wait_until,
)
from .test_table import assert_state_equal


def insert_request(table: str, columns, priorities=None, compression=None):
    request = replay_pb2.InsertRequest(table=table)
    codec.encode_columns(columns, request.columns, compression)
    if priorities is not None:
        codec.encode_tensor(np.asarray(priorities, np.float64), out=request.priorities)
    return request


def insert(stub, messages, metadata=None) -> list[replay_pb2.InsertResponse]:
    """A raw Insert stream of ``messages``: the server's acknowledgements, one per message."""
    return list(stub.Insert(iter(messages),
                            metadata=bearer_metadata(TOKEN) if metadata is None else metadata))


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield replay_pb2_grpc.ReplayServiceStub(channel)


def test_insert_sample_update_info_round_trip(server, client):
    data = transitions(300)
    with client.writer("transitions", max_items_per_message=64) as writer:
        writer.extend(data, priorities=np.full(300, 2.0))
        writer.append({name: column[0] for name, column in transitions(1, start=300).items()},
                      priority=5.0)
    info = client.info()["transitions"]
    assert (info.size, info.inserted_items) == (301, 301)
    assert info.selector == "prioritized(alpha=0.6)"
    assert info.signature["obs"].dtype == "float32" and list(info.signature["obs"].shape) == [4]
    assert info.stored_bytes == 301 * (16 + 8 + 4 + 16 + 4)

    with client.sample("transitions", 32, num_batches=3, prefetch=2) as batches:
        received = list(batches)
    assert len(received) == 3
    batch = received[0]
    rows = batch.columns["action"]
    np.testing.assert_array_equal(batch.keys, rows)
    np.testing.assert_array_equal(batch.columns["obs"][rows < 300], data["obs"][rows[rows < 300]])
    expected = np.where(rows < 300, 2.0, 5.0) ** 0.6 / (300 * 2.0 ** 0.6 + 5.0 ** 0.6)
    np.testing.assert_allclose(batch.probabilities, expected, rtol=1e-9)

    updated, ignored = client.update_priorities("transitions", batch.keys, np.full(32, 0.5))
    assert (updated, ignored) == (32, 0)
    assert client.info(["transitions"])["transitions"].priority_updates == 32


def test_compressed_items_travel_and_stay_compressed(server, client):
    data = frames(40)
    with client.writer("frames") as writer:
        writer.extend(data)
    info = client.info(["frames"])["frames"]
    assert info.signature["frames"].compression == replay_pb2.COMPRESSION_LZ4
    assert info.stored_bytes < 40 * 16 * 16 * 4 / 4
    with client.sample("frames", 16, num_batches=2, reuse_buffers=2) as batches:
        for batch in batches:
            np.testing.assert_array_equal(batch.columns["frames"],
                                          data["frames"][batch.columns["action"]])


def test_uncompressed_frames_are_accepted_and_compressed_by_the_table(server, stub):
    data = frames(4)
    insert(stub, [insert_request("frames", data)])
    assert server.tables["frames"].stats().stored_bytes < 4 * 16 * 16 * 4 / 4


def test_fifo_stream_delivers_in_order_and_prefetches_ahead(server, client):
    with client.writer("rollouts") as writer:
        writer.extend(transitions(8))
    table = server.tables["rollouts"]
    with client.sample("rollouts", 1, prefetch=3) as batches:
        assert next(batches).columns["action"].tolist() == [0]
        wait_until(lambda: table.stats().sampled_items >= 4,
                   what="the server to sample ahead of the client")
        assert [next(batches).columns["action"][0] for _ in range(3)] == [1, 2, 3]


def test_writer_backpressure_blocks_then_delivers_everything(server, client):
    table = server.tables["rollouts"]  # a queue of 8
    errors = []

    def write():
        try:
            with client.writer("rollouts", max_items_per_message=4, max_in_flight_items=4) as w:
                w.extend(transitions(20))
        except Exception as error:
            errors.append(error)

    writer_thread = threading.Thread(target=write, daemon=True)
    writer_thread.start()
    wait_until(lambda: table.stats().inserts_waiting == 1, what="the full queue to push back")
    assert writer_thread.is_alive()
    with client.sample("rollouts", 4, num_batches=5) as batches:
        actions = np.concatenate([batch.columns["action"] for batch in batches])
    writer_thread.join(10)
    assert not errors and not writer_thread.is_alive()
    np.testing.assert_array_equal(actions, np.arange(20))


def test_backpressure_bounds_what_a_writer_holds_in_flight(server, client):
    table = server.tables["rollouts"]  # a queue of 8, never sampled here
    writer = client.writer("rollouts", max_items_per_message=4, max_in_flight_items=12)
    handed = []

    def write():
        with contextlib.suppress(WriterError, RuntimeError):  # until cancelled below
            for start in range(0, 200_000, 4):
                writer.extend(transitions(4, start=start))
                handed.append(4)

    threading.Thread(target=write, daemon=True).start()
    # Blocked for good: 8 stored and acknowledged, 12 in flight, waiting for more room.
    # (waiting and size == 8 alone also hold for a moment while an earlier extend reads
    # the acknowledgement that lets it through.)
    wait_until(lambda: writer.waiting and table.size == 8 and writer.items_stored == 8
               and writer.items_in_flight == 12,
               what="the queue full and the writer waiting for acknowledgements")
    # 8 stored + at most 12 sent unacknowledged; the 4 in the blocked extend are not handed.
    assert sum(handed) == 8 + 12
    writer.cancel()


def test_each_stored_message_is_acknowledged_with_running_totals(stub):
    acknowledgements = insert(stub, [insert_request("transitions", transitions(n, start=10 * n))
                                     for n in (3, 1, 5)])
    assert [(ack.items, ack.messages) for ack in acknowledgements] == [(3, 1), (4, 2), (9, 3)]


def test_messages_may_leave_their_acknowledgement_to_a_later_one(stub):
    messages = [insert_request("transitions", transitions(n, start=10 * n)) for n in (3, 1, 5, 2)]
    for message, later in zip(messages, (True, False, True, True), strict=True):
        message.ack_later = later
    acknowledgements = insert(stub, messages)
    # the second covers the first; the stream's end acknowledges the two left for later
    assert [(ack.items, ack.messages) for ack in acknowledgements] == [(4, 2), (11, 4)]


def test_writer_asks_for_an_acknowledgement_about_every_half_window(client, server):
    writer = client.writer("transitions", max_items_per_message=4, max_in_flight_items=32)
    for start in range(0, 160, 4):  # 40 messages, a window of 8
        writer.extend(transitions(4, start=start))
    stored = writer.close()
    assert (stored.items, stored.messages) == (160, 40)
    assert server.tables["transitions"].size == 160
    assert writer.acknowledgements <= 40 // 4 + 2  # one per 4 messages, give or take the end


def test_writer_close_returns_what_the_stream_stored(client):
    writer = client.writer("transitions", max_items_per_message=7, max_in_flight_items=14)
    writer.extend(transitions(30))
    stored = writer.close()
    assert (stored.items, stored.messages) == (30, 5)
    assert writer.items_in_flight == 0


def test_writer_in_flight_bound_must_hold_a_message(client):
    with pytest.raises(ValueError, match="max_in_flight_items: expected >= max_items_per_message"):
        client.writer("transitions", max_items_per_message=8, max_in_flight_items=4)


def test_sample_deadline_exceeded_when_the_rate_limiter_holds(server, client):
    with pytest.raises(grpc.RpcError) as raised, \
            client.sample("rollouts", 2, timeout=0.1) as batches:
        next(batches)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "rollouts" in raised.value.details()


def test_checkpoint_rpc_writes_a_checkpoint_a_new_server_restores(tmp_path, server, client):
    with client.writer("transitions") as writer:
        writer.extend(transitions(50), priorities=np.arange(1.0, 51.0))
    client.update_priorities("transitions", np.array([3, 7]), np.array([100.0, 0.0]))
    path = client.checkpoint()
    assert path.startswith(str(tmp_path / "ckpt"))
    saved = server.tables["transitions"].state()
    with ReplayServer(service_tables(), token=TOKEN, checkpoint_dir=tmp_path / "ckpt") as again:
        assert str(again.restored_from) == path
        assert_state_equal(saved, again.tables["transitions"].state())


def test_checkpoint_without_a_directory_is_failed_precondition():
    with ReplayServer([prioritized_table()], token=TOKEN) as plain, \
            ReplayClient(plain.address, TOKEN) as client, pytest.raises(grpc.RpcError) as raised:
        client.checkpoint()
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize("metadata", [(), bearer_metadata("wrong-token"),
                                      (("authorization", TOKEN),)])
def test_every_rpc_needs_the_run_token(server, stub, metadata):
    calls = [
        lambda: stub.Info(replay_pb2.InfoRequest(), metadata=metadata),
        lambda: insert(stub, [insert_request("transitions", transitions(2))], metadata),
        lambda: next(stub.Sample(replay_pb2.SampleRequest(table="transitions", batch_size=1),
                                 metadata=metadata)),
        lambda: stub.UpdatePriorities(replay_pb2.UpdatePrioritiesRequest(table="transitions"),
                                      metadata=metadata),
        lambda: stub.Checkpoint(replay_pb2.CheckpointRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization" in raised.value.details()
    assert server.tables["transitions"].size == 0


# ----------------------------------------------------------- bad input


def _truncated(request):
    request.columns["obs"].data = request.columns["obs"].data[:-1]
    return request


def _unknown_compression(request):
    request.columns["obs"].compression = 7
    return request


def _corrupt_rows(request):
    request.columns["frames"].rows[1] = b"\x00garbage"
    return request


BAD_INSERTS = {
    "unknown table": (lambda: insert_request("nope", transitions(2)),
                      grpc.StatusCode.NOT_FOUND, "table: no table 'nope'"),
    "missing field": (lambda: insert_request("transitions", {
        k: v for k, v in transitions(2).items() if k != "reward"}),
        grpc.StatusCode.INVALID_ARGUMENT, r"columns: missing \['reward'\]"),
    "extra field": (lambda: insert_request("transitions", {**transitions(2), "x": np.ones(2)}),
                    grpc.StatusCode.INVALID_ARGUMENT, r"columns: unexpected \['x'\]"),
    "wrong dtype": (lambda: insert_request("transitions", {
        **transitions(2), "obs": np.zeros((2, 4))}),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"obs: expected float32\[items, \*\[4\]\], got float64\[2, 4\]"),
    "wrong shape": (lambda: insert_request("transitions", {
        **transitions(2), "next_obs": np.zeros((2, 3), np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"next_obs: expected float32\[items, \*\[4\]\], got float32\[2, 3\]"),
    "nan priority": (lambda: insert_request("transitions", transitions(2), [1.0, np.nan]),
                     grpc.StatusCode.INVALID_ARGUMENT, "priorities: expected finite"),
    "negative priority": (lambda: insert_request("transitions", transitions(2), [1.0, -2.0]),
                          grpc.StatusCode.INVALID_ARGUMENT, "priorities: expected numbers >= 0"),
    "truncated bytes": (lambda: _truncated(insert_request("transitions", transitions(2))),
                        grpc.StatusCode.INVALID_ARGUMENT, "obs: data has 31 bytes, expected 32"),
    "unknown compression": (
        lambda: _unknown_compression(insert_request("transitions", transitions(2))),
        grpc.StatusCode.INVALID_ARGUMENT, "obs: unknown compression 7"),
    "corrupt compressed row": (
        lambda: _corrupt_rows(insert_request("frames", frames(3), compression={"frames": "lz4"})),
        grpc.StatusCode.INVALID_ARGUMENT, "frames: "),
    "too many items": (lambda: insert_request("rollouts", transitions(9)),
                       grpc.StatusCode.INVALID_ARGUMENT, r"expected 1..max_size \(8\) items"),
}


@pytest.mark.parametrize("case", sorted(BAD_INSERTS))
def test_bad_insert_gets_its_status_and_changes_nothing(server, client, stub, case):
    make_request, code, pattern = BAD_INSERTS[case]
    with client.writer("transitions") as writer:
        writer.extend(transitions(5))
    with client.writer("frames") as writer:
        writer.extend(frames(3))
    before = {name: table.state() for name, table in server.tables.items()}
    good = insert_request("transitions", transitions(2, start=5))
    with pytest.raises(grpc.RpcError) as raised:
        insert(stub, [make_request()])
    assert raised.value.code() == code
    assert raised.value.details() is not None
    assert re.search(pattern, raised.value.details()), raised.value.details()
    for name, table in server.tables.items():
        assert_state_equal(before[name], table.state())
    # The server stays up: a good message on a new stream is stored.
    insert(stub, [good])
    assert server.tables["transitions"].size == 7


def test_a_bad_message_ends_the_stream_keeping_the_messages_before_it(server, stub):
    messages = [insert_request("transitions", transitions(3)),
                insert_request("transitions", {**transitions(2), "obs": np.zeros((2, 4))}),
                insert_request("transitions", transitions(4))]
    with pytest.raises(grpc.RpcError) as raised:
        insert(stub, messages)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.tables["transitions"].size == 3


def test_writer_surfaces_the_servers_refusal(server, client):
    writer = client.writer("transitions")
    writer.extend({**transitions(2), "obs": np.zeros((2, 4))})
    with pytest.raises(WriterError, match="INVALID_ARGUMENT: table 'transitions': obs"):
        writer.close()


@pytest.mark.parametrize(("fields", "pattern"), [
    ({"batch_size": 0}, r"batch_size: expected 1..max_size \(1000\), got 0"),
    ({"batch_size": 1001}, r"batch_size: expected 1..max_size \(1000\), got 1001"),
    ({"batch_size": 4, "prefetch": -1}, r"prefetch: expected 0\.\.64"),
    # One request must not hold the table's lock for half a million batches.
    ({"batch_size": 4, "prefetch": 500_000}, r"prefetch: expected 0\.\.64 .*got 500000"),
    ({"batch_size": 4, "timeout_seconds": -1}, "timeout_seconds: expected >= 0"),
])
def test_bad_sample_requests_are_invalid_argument(server, client, stub, fields, pattern):
    with client.writer("transitions") as writer:
        writer.extend(transitions(5))
    before = server.tables["transitions"].state()
    request = replay_pb2.SampleRequest(table="transitions", **fields)
    with pytest.raises(grpc.RpcError) as raised:
        next(stub.Sample(request, metadata=bearer_metadata(TOKEN)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(pattern, raised.value.details()), raised.value.details()
    assert_state_equal(before, server.tables["transitions"].state())


def test_bad_priority_updates_are_invalid_argument_and_change_nothing(server, client, stub):
    with client.writer("transitions") as writer:
        writer.extend(transitions(5))
    before = server.tables["transitions"].state()
    for priorities, pattern in [([1.0, np.nan], "priorities: expected finite"),
                                ([1.0, -1.0], "priorities: expected numbers >= 0"),
                                ([1.0], "priorities: expected 2 numbers")]:
        with pytest.raises(grpc.RpcError) as raised:
            client.update_priorities("transitions", [0, 1], priorities)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert pattern in raised.value.details()
    assert_state_equal(before, server.tables["transitions"].state())
    with pytest.raises(grpc.RpcError) as raised:
        client.update_priorities("nope", [0], [1.0])
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_oversized_message_is_resource_exhausted_and_the_server_stays_up():
    table = Table.queue("rollouts", 100_000, CARTPOLE_SIGNATURE)
    with ReplayServer([table], token=TOKEN, max_message_bytes=64 * 1024) as small, \
            ReplayClient(small.address, TOKEN) as client:
        with pytest.raises(WriterError) as raised, \
                client.writer("rollouts", max_items_per_message=10_000) as writer:
            writer.extend(transitions(10_000))  # ~480 kB in one message
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert table.size == 0
        with client.writer("rollouts", max_items_per_message=100) as writer:
            writer.extend(transitions(1000))
        assert table.size == 1000


def test_prefetched_batches_arrive_one_by_one_with_their_own_probabilities(server, client):
    priorities = np.linspace(0.1, 9.0, 200)
    with client.writer("transitions") as writer:
        writer.extend(transitions(200), priorities=priorities)
    with client.sample("transitions", 32, prefetch=4, num_batches=6) as batches:
        received = list(batches)
    assert [batch.keys.size for batch in received] == [32] * 6
    mass = priorities ** 0.6
    for batch in received:
        np.testing.assert_allclose(batch.probabilities, mass[batch.keys] / mass.sum(),
                                   rtol=1e-9)
    assert server.tables["transitions"].stats().sampled_items == 6 * 32
