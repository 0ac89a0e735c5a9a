"""ParameterService, hosted by the learner: actors follow the newest weights.

``publish`` encodes a version once; every Watch stream then sends the newest encoded
message whenever it is newer than what that stream sent last, so a slow actor skips
versions rather than queueing them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from shoal.algorithms.base import Weights
from shoal.protos import codec, parameters_pb2, parameters_pb2_grpc
from shoal.protos.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONCURRENT_CALLS,
    Tls,
    bind,
    token_server,
)

_POLL_SECONDS = 0.5


class _Servicer(parameters_pb2_grpc.ParameterServiceServicer):
    def __init__(self, service: ParameterServer) -> None:
        self._service = service

    def Watch(
        self, request: parameters_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[parameters_pb2.Weights]:
        sent = request.after_version
        while context.is_active() and not self._service.closed:
            message = self._service.newer_than(sent, timeout=_POLL_SECONDS)
            if message is not None:
                sent = message.version
                yield message


class ParameterServer:
    """``with ParameterServer(token=t) as weights: weights.publish(learner.weights())``."""

    def __init__(self, *, token: str, host: str = "127.0.0.1", port: int = 0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_workers: int = MAX_CONCURRENT_CALLS,
                 tls: Tls | None = None) -> None:
        self.version = 0
        self.closed = False
        self._latest: parameters_pb2.Weights | None = None
        self._changed = threading.Condition()
        self._grpc = token_server(token, max_workers=max_workers,
                                  max_message_bytes=max_message_bytes, thread_prefix="params")
        parameters_pb2_grpc.add_ParameterServiceServicer_to_server(_Servicer(self), self._grpc)
        self.port, self.address = bind(self._grpc, host, port, tls)

    def publish(self, weights: Weights, version: int | None = None) -> int:
        """Makes ``weights`` the newest version (the next number, or ``version`` when a
        resumed learner continues its count); returns that version."""
        message = parameters_pb2.Weights(version=self.version + 1 if version is None else version)
        codec.encode_columns(weights, message.tensors)
        with self._changed:
            self._latest = message
            self.version = message.version
            self._changed.notify_all()
        return message.version

    def newer_than(self, version: int, timeout: float) -> parameters_pb2.Weights | None:
        with self._changed:
            self._changed.wait_for(
                lambda: self.closed or (self._latest is not None
                                        and self._latest.version > version), timeout)
            latest = self._latest
        return latest if latest is not None and latest.version > version else None

    def start(self) -> ParameterServer:
        self._grpc.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()
        self._grpc.stop(grace).wait()

    def __enter__(self) -> ParameterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
