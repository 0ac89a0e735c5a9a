"""The replay service over gRPC: tables behind ReplayService, with auth and checkpoints.

``ReplayServer`` owns the sockets and threads; everything it does to data, it asks of a
``Table``, so the storage logic runs and tests without a server.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONCURRENT_CALLS,
    Tls,
    bind,
    token_server,
)
from shoal.replay_service import checkpoint
from shoal.replay_service.limits import MAX_ITEMS_PER_CALL, MAX_PREFETCH
from shoal.replay_service.messages import (
    decode_insert,
    decode_priority_update,
    encode_sample,
    table_info,
)
from shoal.replay_service.table import (
    InvalidItems,
    RateLimiterTimeout,
    Table,
    TableClosed,
    WaitCancelled,
)

log = logging.getLogger(__name__)

# How often a blocked stream re-checks whether its client is still there.
_POLL_SECONDS = 0.2


_END = object()


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


class ReplayServicer(replay_pb2_grpc.ReplayServiceServicer):
    def __init__(self, tables: Mapping[str, Table], server: ReplayServer) -> None:
        self._tables = tables
        self._server = server

    def _table(self, name: str, context: grpc.ServicerContext) -> Table:
        table = self._tables.get(name)
        if table is None:
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"table: no table {name!r}; tables are {sorted(self._tables)}")
        return table

    @staticmethod
    def _invalid(context: grpc.ServicerContext, table: Table, error: object) -> NoReturn:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"table {table.name!r}: {error}")

    @staticmethod
    def _cancel_on_end(context: grpc.ServicerContext, table: Table) -> threading.Event:
        """An event set when the RPC ends, which also wakes the table's waiters."""
        ended = threading.Event()

        def on_end() -> None:
            ended.set()
            table.wake()

        context.add_callback(on_end)
        return ended

    def Insert(
        self, request_iterator: Iterator[replay_pb2.InsertRequest], context: grpc.ServicerContext
    ) -> Iterator[replay_pb2.InsertResponse]:
        items = messages = 0
        unacknowledged = False  # the last stored message left its acknowledgement for later
        ended: dict[str, threading.Event] = {}
        for messages, request in enumerate(request_iterator, start=1):
            table = self._table(request.table, context)
            if table.name not in ended:
                ended[table.name] = self._cancel_on_end(context, table)
            try:
                columns, priorities, frames = decode_insert(request, table)
                keys = table.insert(columns, priorities, frames=frames,
                                    cancel=ended[table.name])
            except (InvalidItems, codec.CodecError) as error:
                self._invalid(context, table, error)
            except (WaitCancelled, TableClosed) as error:
                _abort(context, grpc.StatusCode.UNAVAILABLE, str(error))
            items += keys.size
            unacknowledged = request.ack_later
            if not unacknowledged:
                yield replay_pb2.InsertResponse(items=items, messages=messages)
        if unacknowledged:  # the writer waits for its last items at the stream's end
            yield replay_pb2.InsertResponse(items=items, messages=messages)

    def Sample(
        self, request: replay_pb2.SampleRequest, context: grpc.ServicerContext
    ) -> Iterator[replay_pb2.SampleResponse]:
        table = self._table(request.table, context)
        problem = _sample_request_problem(request, table)
        if problem:
            self._invalid(context, table, problem)
        ended = self._cancel_on_end(context, table)
        batches: queue.Queue[Any] = queue.Queue(maxsize=1)
        producer = threading.Thread(
            target=self._produce,
            args=(table, request, batches, ended, self._server.max_message_bytes),
            name=f"sample-{table.name}", daemon=True)
        producer.start()
        try:
            while True:
                try:
                    item = batches.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if ended.is_set():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, tuple):
                    _abort(context, *item)
                yield item
        finally:
            ended.set()
            table.wake()

    @staticmethod
    def _produce(
        table: Table, request: replay_pb2.SampleRequest, batches: queue.Queue[Any],
        ended: threading.Event, max_message_bytes: int,
    ) -> None:
        """Samples ahead of the client, ``prefetch`` batches per draw, until told to stop."""

        def put(item: Any) -> None:
            while not ended.is_set():
                try:
                    batches.put(item, timeout=_POLL_SECONDS)
                    return
                except queue.Full:
                    continue

        timeout = request.timeout_seconds or None
        # Fewer batches per draw than asked when more would hold the lock too long.
        per_draw = max(1, min(request.prefetch, MAX_ITEMS_PER_CALL // request.batch_size))
        produced = 0
        try:
            while not ended.is_set() and (request.num_batches == 0
                                          or produced < request.num_batches):
                wanted = _batches_that_fit(table, request.batch_size, max_message_bytes, min(
                    per_draw, request.num_batches - produced) if request.num_batches else per_draw)
                batch = table.sample(request.batch_size, batches=wanted,
                                     timeout=timeout, cancel=ended, decompress=False)
                put(encode_sample(batch, table, request.batch_size))
                produced += batch.keys.size // request.batch_size
            put(_END)
        except WaitCancelled:
            return
        except RateLimiterTimeout as error:
            put((grpc.StatusCode.DEADLINE_EXCEEDED, str(error)))
        except TableClosed as error:
            put((grpc.StatusCode.UNAVAILABLE, str(error)))
        except Exception as error:  # a bug: report it on the stream rather than hang it
            log.exception("sampling table %r failed", table.name)
            put((grpc.StatusCode.INTERNAL, f"sampling failed: {error!r}"))

    def UpdatePriorities(
        self, request: replay_pb2.UpdatePrioritiesRequest, context: grpc.ServicerContext
    ) -> replay_pb2.UpdatePrioritiesResponse:
        table = self._table(request.table, context)
        try:
            keys, priorities = decode_priority_update(request)
            updated, ignored = table.update_priorities(keys, priorities)
        except (InvalidItems, codec.CodecError) as error:
            self._invalid(context, table, error)
        return replay_pb2.UpdatePrioritiesResponse(updated=updated, ignored=ignored)

    def Info(
        self, request: replay_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> replay_pb2.InfoResponse:
        names = list(request.tables) or list(self._tables)
        return replay_pb2.InfoResponse(
            tables=[table_info(self._table(name, context)) for name in names])

    def Checkpoint(
        self, request: replay_pb2.CheckpointRequest, context: grpc.ServicerContext
    ) -> replay_pb2.CheckpointResponse:
        if self._server.checkpoint_dir is None:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   "checkpoint: this server has no checkpoint directory")
        return replay_pb2.CheckpointResponse(path=str(self._server.checkpoint()))


_SAMPLED_ITEM_OVERHEAD = 16  # key and probability of each item: 8 + 8 bytes


def _batches_that_fit(table: Table, batch_size: int, max_message_bytes: int, wanted: int) -> int:
    """Up to ``wanted`` batches, as many as fit half a message at the table's mean item size
    (at least one): a draw larger than the message limit would be drawn, counted as sampled,
    and then fail to send."""
    item_bytes = _SAMPLED_ITEM_OVERHEAD + table.sampled_item_bytes()
    return max(1, min(wanted, max_message_bytes // 2 // (batch_size * item_bytes)))


def _sample_request_problem(request: replay_pb2.SampleRequest, table: Table) -> str | None:
    if not 1 <= request.batch_size <= table.max_size:
        return f"batch_size: expected 1..max_size ({table.max_size}), got {request.batch_size}"
    if not 1 <= request.batch_size <= MAX_ITEMS_PER_CALL:
        return f"batch_size: expected 1..{MAX_ITEMS_PER_CALL}, got {request.batch_size}"
    if not 0 <= request.prefetch <= MAX_PREFETCH:
        return f"prefetch: expected 0..{MAX_PREFETCH} (0 means 1), got {request.prefetch}"
    if request.num_batches < 0:
        return f"num_batches: expected >= 0 (0: unbounded), got {request.num_batches}"
    if not (math.isfinite(request.timeout_seconds) and request.timeout_seconds >= 0):
        return f"timeout_seconds: expected >= 0 (0: no limit), got {request.timeout_seconds}"
    return None


class ReplayServer:
    """A running replay service: ``with ReplayServer(tables, token=t) as server: ...``.

    On start it restores the newest checkpoint in ``checkpoint_dir`` if there is one; with
    ``checkpoint_every_seconds`` it checkpoints periodically; ``stop(checkpoint=True)``
    writes a last one (what SIGTERM does in ``shoal replay-server``).
    """

    def __init__(
        self,
        tables: Sequence[Table],
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        checkpoint_dir: Path | None = None,
        checkpoint_every_seconds: float = 0.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_workers: int = MAX_CONCURRENT_CALLS,
        tls: Tls | None = None,
    ) -> None:
        names = [table.name for table in tables]
        if len(set(names)) != len(names):
            raise ValueError(f"tables: names must be distinct, got {names}")
        self.tables = {table.name: table for table in tables}
        self.checkpoint_dir = checkpoint_dir
        self.max_message_bytes = max_message_bytes
        self.restored_from: Path | None = None
        self._checkpoint_every = checkpoint_every_seconds
        self._checkpoint_lock = threading.Lock()
        self._stopping = threading.Event()
        self._periodic: threading.Thread | None = None
        self._grpc = token_server(token, max_workers=max_workers,
                                  max_message_bytes=max_message_bytes, thread_prefix="replay")
        replay_pb2_grpc.add_ReplayServiceServicer_to_server(
            ReplayServicer(self.tables, self), self._grpc)
        self.port, self.address = bind(self._grpc, host, port, tls)

    def start(self) -> ReplayServer:
        if self.checkpoint_dir is not None:
            newest = checkpoint.latest(self.checkpoint_dir)
            if newest is not None:
                checkpoint.restore(self.tables, newest)
                self.restored_from = newest
                log.info("restored %s from %s", sorted(self.tables), newest)
        self._grpc.start()
        if self.checkpoint_dir is not None and self._checkpoint_every > 0:
            self._periodic = threading.Thread(target=self._checkpoint_periodically,
                                              name="replay-checkpoint", daemon=True)
            self._periodic.start()
        return self

    def checkpoint(self) -> Path:
        if self.checkpoint_dir is None:
            raise RuntimeError("this server has no checkpoint directory")
        with self._checkpoint_lock:
            return checkpoint.save(self.tables, self.checkpoint_dir)

    def _checkpoint_periodically(self) -> None:
        while not self._stopping.wait(self._checkpoint_every):
            path = self.checkpoint()
            log.info("checkpointed to %s", path)

    def stop(self, grace: float = 1.0, *, checkpoint: bool = False) -> Path | None:
        """Stops serving (waking every blocked stream); optionally writes a last checkpoint."""
        self._stopping.set()
        for table in self.tables.values():
            table.close()
        self._grpc.stop(grace).wait()
        if self._periodic is not None:
            self._periodic.join()
        if checkpoint and self.checkpoint_dir is not None:
            return self.checkpoint()
        return None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
