"""The writing half of the replay client: items batched into Insert messages on one
long-lived Insert stream, with a bound on what is sent but not yet stored.

``ReplayClient.writer(table)`` makes one (it asks the server once how the table stores
its fields); ``replay_service/reconnecting.py`` keeps one going across restarts.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import numpy as np

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.frames import split_frames
from shoal.replay_service.limits import MAX_ITEMS_PER_CALL


class WriterError(RuntimeError):
    """The Insert stream failed; ``code`` and ``details`` are the server's status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Writer:
    """Batches items into InsertRequests on one long-lived Insert stream.

    Items collect in a buffer and go out as one message per ``max_items_per_message``.
    The server acknowledges each message once it has stored it, and a writer keeps at most
    ``max_in_flight_items`` sent but unacknowledged: when the server's rate limiter holds
    inserts, acknowledgements stop and ``append``/``extend`` block, so backpressure reaches
    the actor after a known number of items, not after whatever gRPC's flow-control windows
    hold (thousands of small transitions). ``blocked_seconds`` says how long they waited.
    Fields the table stores compressed are compressed here, per item, so the server never
    has to; frames fields (``frame_compression`` set) go as each distinct frame of the
    message once plus indices (``protos/frames.py``).
    """

    def __init__(
        self,
        stub: replay_pb2_grpc.ReplayServiceStub,
        table: str,
        metadata: tuple[tuple[str, str], ...],
        compression: Mapping[str, codec.CompressionName],
        max_items_per_message: int,
        max_in_flight_items: int,
        frame_fields: tuple[str, ...] = (),
        frame_compression: codec.CompressionName = "lz4",
    ) -> None:
        if not 1 <= max_items_per_message <= MAX_ITEMS_PER_CALL:
            raise ValueError(f"max_items_per_message: expected 1..{MAX_ITEMS_PER_CALL} (what a "
                             f"server stores per message), got {max_items_per_message}")
        if max_in_flight_items < max_items_per_message:
            raise ValueError(f"max_in_flight_items: expected >= max_items_per_message "
                             f"({max_items_per_message}), got {max_in_flight_items}")
        self.table = table
        self.blocked_seconds = 0.0
        self.waiting = False  # True while a send waits for the server to store earlier items
        self._stub = stub
        self._metadata = metadata
        self._compression = dict(compression)
        self._frame_fields = frame_fields
        self._frame_compression = frame_compression
        self._max_items = max_items_per_message
        self._max_in_flight = max_in_flight_items
        # Unbounded: what it holds is bounded by max_in_flight_items.
        self._outbox: queue.SimpleQueue[replay_pb2.InsertRequest | None] = queue.SimpleQueue()
        self._chunks: list[Mapping[str, np.ndarray]] = []
        self._priority_chunks: list[np.ndarray] = []
        self._pending = 0
        self._with_priorities: bool | None = None
        self._call: Any = None
        self._sent_items = 0
        self._since_acknowledged = 0  # items sent since the last message that asked
        self.acknowledgements = 0  # read so far: fewer than messages (ack_later)
        self.items_handed = 0  # taken by extend/append: stored, in flight or buffered
        self._stored = replay_pb2.InsertResponse()  # the latest acknowledgement
        self._closed = False

    @property
    def items_stored(self) -> int:
        """Items the server has acknowledged as stored (as far as this writer has read)."""
        return self._stored.items

    @property
    def items_in_flight(self) -> int:
        """Items sent whose acknowledgement this writer has not read yet."""
        return self._sent_items - self._stored.items

    # Items in ---------------------------------------------------------------

    def append(self, item: Mapping[str, Any], priority: float | None = None) -> None:
        """One item: each field without the item axis."""
        self.extend({name: np.asarray(value)[None] for name, value in item.items()},
                    None if priority is None else np.array([priority], dtype=np.float64))

    def extend(self, columns: Mapping[str, Any], priorities: Any = None) -> None:
        """Many items: each field with the item axis first, all of one length."""
        if self._closed:
            raise RuntimeError("writer: append after close")
        self._raise_if_failed()
        arrays = {name: np.asarray(value) for name, value in columns.items()}
        if not arrays or any(array.ndim == 0 for array in arrays.values()):
            raise ValueError("columns: expected fields with an item axis first")
        count = len(next(iter(arrays.values())))
        with_priorities = priorities is not None
        if self._with_priorities is not None and with_priorities != self._with_priorities:
            self.flush()  # one message carries priorities for all its items, or for none
        self._with_priorities = with_priorities
        self._chunks.append(arrays)
        if with_priorities:
            self._priority_chunks.append(np.asarray(priorities, dtype=np.float64))
        self._pending += count
        self.items_handed += count
        if self._pending >= self._max_items:
            self._send_pending(full_messages_only=True)

    def flush(self) -> None:
        """Hands every buffered item to the stream now (the server stores them in order)."""
        self._send_pending(full_messages_only=False)

    # Messages out -----------------------------------------------------------

    def _send_pending(self, full_messages_only: bool) -> None:
        if not self._pending:
            return
        columns = {name: np.concatenate([chunk[name] for chunk in self._chunks])
                   for name in self._chunks[0]}
        priorities = (np.concatenate(self._priority_chunks)
                      if self._with_priorities else None)
        start = 0
        while self._pending - start >= self._max_items or (
                not full_messages_only and start < self._pending):
            stop = min(start + self._max_items, self._pending)
            self._send({name: array[start:stop] for name, array in columns.items()},
                       None if priorities is None else priorities[start:stop])
            start = stop
        rest = {name: array[start:] for name, array in columns.items()}
        self._chunks = [rest] if start < self._pending else []
        self._priority_chunks = ([priorities[start:]]
                                 if priorities is not None and start < self._pending else [])
        self._pending -= start

    def encode(self, columns: Mapping[str, np.ndarray],
               priorities: np.ndarray | None = None) -> replay_pb2.InsertRequest:
        """One Insert message of these items, as this writer sends it: benchmarks build
        theirs beforehand, so what they time is the server's work, not the encoding."""
        request = replay_pb2.InsertRequest(table=self.table)
        if self._frame_fields:
            stacks = {name: columns[name] for name in self._frame_fields}
            frames, indices = split_frames(stacks, self._frame_compression)
            first = stacks[self._frame_fields[0]]
            codec.encode_rows(frames, first.dtype, first.shape[-2:], self._frame_compression,
                              out=request.frames)
            columns = {**columns, **indices}
        codec.encode_columns(columns, request.columns, self._compression)
        if priorities is not None:
            codec.encode_tensor(priorities, out=request.priorities)
        return request

    def _send(self, columns: Mapping[str, np.ndarray], priorities: np.ndarray | None) -> None:
        count = len(next(iter(columns.values())))
        request = self.encode(columns, priorities)
        if self._call is None:
            self._call = self._stub.Insert(self._requests(), metadata=self._metadata)
        if self.items_in_flight + count > self._max_in_flight:
            start = time.monotonic()
            self.waiting = True
            try:
                # Terminates: the last message sent asked for its acknowledgement (below),
                # and with nothing in flight, count <= max_items <= max_in_flight.
                while self.items_in_flight + count > self._max_in_flight:
                    self._read_acknowledgement()
            finally:
                self.waiting = False
                self.blocked_seconds += time.monotonic() - start
        # An acknowledgement about every half of the in-flight bound (the server's cost of
        # one was a fifth of a CartPole message's), and always where the next message could
        # have to wait for room: a writer that waits has an acknowledgement coming.
        self._since_acknowledged += count
        asks = (2 * self._since_acknowledged >= self._max_in_flight
                or self.items_in_flight + count + self._max_items > self._max_in_flight)
        request.ack_later = not asks
        if asks:
            self._since_acknowledged = 0
        self._outbox.put(request)
        self._sent_items += count

    def _read_acknowledgement(self) -> None:
        try:
            self._stored = next(self._call)
            self.acknowledgements += 1
        except StopIteration:
            raise WriterError(grpc.StatusCode.UNKNOWN, "the Insert stream ended") from None
        except grpc.RpcError as error:
            raise WriterError(error.code(), error.details()) from None

    def _requests(self) -> Iterator[replay_pb2.InsertRequest]:
        while (request := self._outbox.get()) is not None:
            yield request

    def _raise_if_failed(self) -> None:
        if self._call is not None and self._call.done():
            if self._call.cancelled():
                raise WriterError(grpc.StatusCode.CANCELLED, "the writer was cancelled")
            error = self._call.exception()
            if error is not None:
                raise WriterError(error.code(), error.details()) from None

    def close(self) -> replay_pb2.InsertResponse:
        """Flushes, ends the stream and waits until the server has stored everything;
        raises WriterError if it refused any message."""
        if self._closed:
            raise RuntimeError("writer: already closed")
        try:
            self.flush()
        finally:
            self._closed = True
            if self._call is not None:
                self._outbox.put(None)
        if self._call is None:
            return replay_pb2.InsertResponse()
        while self.items_in_flight:
            self._read_acknowledgement()
        return self._stored

    def cancel(self) -> None:
        """Drops the stream without waiting (what is unsent is lost)."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
