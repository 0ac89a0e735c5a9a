"""Writing and sampling that outlive restarts of the replay service: what actors and the
learner hold, over the plain ``Writer`` and ``Sampler`` of ``client.py``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import grpc

from shoal.protos.transport import Backoff
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.sampling import SampleBatch, Sampler
from shoal.replay_service.writer import Writer, WriterError

log = logging.getLogger(__name__)


RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""What a replay service that went away (killed, restarting) looks like to a client; any
other status is an answer, and retrying would get the same one."""


class ReconnectingWriter:
    """A Writer that outlives restarts of the replay service (what an actor holds).

    When the Insert stream fails with a RETRYABLE status, the items the service had not
    acknowledged are counted in ``items_lost`` (a restarted service holds what its last
    checkpoint held, not them), and a new stream opens once the service answers again,
    after a backoff doubling from 0.1 s to ``max_backoff``. Items of a call that failed
    before the writer took them are written to the new stream. ``stop`` ends the waiting.
    """

    def __init__(self, client: ReplayClient, table: str, stop: threading.Event, *,
                 max_items_per_message: int = 256, max_in_flight_items: int | None = None,
                 max_backoff: float = 5.0) -> None:
        self._stop = stop
        self._open = lambda: client.writer(table, max_items_per_message=max_items_per_message,
                                           max_in_flight_items=max_in_flight_items)
        self._max_backoff = max_backoff
        self._writer: Writer | None = self._open()
        self._done_stored = 0     # by the writers before this one
        self._done_blocked = 0.0
        self.items_lost = 0
        self.reconnects = 0

    @property
    def items_stored(self) -> int:
        return self._done_stored + (self._writer.items_stored if self._writer else 0)

    @property
    def blocked_seconds(self) -> float:
        return self._done_blocked + (self._writer.blocked_seconds if self._writer else 0.0)

    def extend(self, columns: Mapping[str, Any], priorities: Any = None) -> None:
        while self._writer is not None:
            writer = self._writer
            handed = writer.items_handed
            try:
                writer.extend(columns, priorities)
                return
            except WriterError as error:
                if error.code not in RETRYABLE:
                    raise
                self._reopen(error)
                if writer.items_handed > handed:
                    return  # it took them before failing: they are among the lost

    def _reopen(self, error: WriterError) -> None:
        old = self._writer
        assert old is not None
        old.cancel()
        self.items_lost += old.items_handed - old.items_stored
        self._done_stored += old.items_stored
        self._done_blocked += old.blocked_seconds
        self._writer = None
        backoff = Backoff(self._stop, self._max_backoff)
        log.warning("replay insert stream: %s; reopening", error)
        while not backoff.wait():
            try:
                self._writer = self._open()
                self.reconnects += 1
                return
            except grpc.RpcError as failure:
                if failure.code() not in RETRYABLE:
                    raise

    def close(self) -> None:
        """Flushes and waits for the service to store everything (see Writer.close)."""
        if self._writer is not None:
            self._writer.close()

    def cancel(self) -> None:
        if self._writer is not None:
            self._writer.cancel()

    def __enter__(self) -> ReconnectingWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()


class ReconnectingSampler:
    """Batches from a table across restarts of the replay service: a stream that fails
    with a RETRYABLE status is opened again after a backoff (doubling from 0.1 s to
    ``max_backoff``), so a learner waits for a restarting service instead of failing.
    ``close()`` may come from another thread: it cancels the stream a reader is blocked on.
    """

    def __init__(self, client: ReplayClient, table: str, batch_size: int, *,
                 prefetch: int = 2, max_backoff: float = 5.0, reuse_buffers: int = 0,
                 decode_threads: int = 0) -> None:
        """``reuse_buffers``, ``decode_threads``: each stream's, as ``Sampler`` takes them."""
        self._client = client
        self._request = (table, batch_size, prefetch)
        self._decoding = {"reuse_buffers": reuse_buffers, "decode_threads": decode_threads}
        self._max_backoff = max_backoff
        self._sampler: Sampler | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.reconnects = 0

    def __iter__(self) -> ReconnectingSampler:
        return self

    def __next__(self) -> SampleBatch:
        backoff = Backoff(self._closed, self._max_backoff)
        while not self._closed.is_set():
            with self._lock:
                if self._closed.is_set():
                    break
                if self._sampler is None:
                    table, batch_size, prefetch = self._request
                    self._sampler = self._client.sample(table, batch_size, prefetch=prefetch,
                                                        **self._decoding)
                sampler = self._sampler
            try:
                return next(sampler)
            except grpc.RpcError as error:
                if self._closed.is_set():
                    break
                if error.code() not in RETRYABLE:
                    raise
                log.warning("replay sample stream: %s; reopening in %.1f s",
                            error.code().name, backoff.seconds)
            with self._lock:
                sampler.close()
                self._sampler = None
                self.reconnects += 1
            backoff.wait()
        raise StopIteration

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._sampler is not None:
                self._sampler.close()

    def __enter__(self) -> ReconnectingSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
