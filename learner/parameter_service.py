"""ParameterService, hosted by the learner: actors follow the newest weights.

``publish`` encodes a version once; every Watch stream then sends the newest encoded
message whenever it is newer than what that stream sent last, so a slow actor skips
versions rather than queueing them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import grpc
import numpy as np

from shoal.algorithms.base import Weights
from shoal.algorithms.normalization import RunningStats
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

    def Report(self, request: parameters_pb2.ObservationStats,
               context: grpc.ServicerContext) -> parameters_pb2.ReportReply:
        merged = self._service.observation_stats
        if merged is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "Report: this run does not normalise observations")
            raise AssertionError("abort raises")
        try:
            stats = _reported_stats(request, merged.mean.shape)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        self._service.merge_observation_stats(stats)
        return parameters_pb2.ReportReply()

    def Watch(
        self, request: parameters_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[parameters_pb2.Weights]:
        sent = request.after_version
        while context.is_active() and not self._service.closed:
            message = self._service.newer_than(sent, timeout=_POLL_SECONDS)
            if message is not None:
                sent = message.version
                yield message


def _reported_stats(request: parameters_pb2.ObservationStats,
                    shape: tuple[int, ...]) -> RunningStats:
    """A report as statistics, or ValueError naming the field that is wrong."""
    if request.count < 0:
        raise ValueError(f"count: expected >= 0, got {request.count}")
    columns = {}
    for name in ("mean", "m2"):
        try:
            array = codec.decode_tensor(getattr(request, name), name,
                                        max_bytes=8 * max(1, math.prod(shape)))
        except codec.CodecError as error:
            raise ValueError(str(error)) from None
        if array.shape != shape or not np.isfinite(array).all():
            raise ValueError(f"{name}: expected {len(shape)}-d finite values of shape "
                             f"{list(shape)}, got {array.dtype.name}{list(array.shape)}")
        columns[name] = array.astype(np.float64)
    if (columns["m2"] < 0).any():
        raise ValueError("m2: expected sums of squares (>= 0)")
    return RunningStats(float(request.count), columns["mean"], columns["m2"])


class ParameterServer:
    """``with ParameterServer(token=t) as weights: weights.publish(learner.weights())``.

    With ``observation_shape`` it also keeps the run's observation statistics: actors'
    reports merge into ``observation_stats``, which the learner publishes with weights."""

    def __init__(self, *, token: str, host: str = "127.0.0.1", port: int = 0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_workers: int = MAX_CONCURRENT_CALLS,
                 tls: Tls | None = None,
                 observation_shape: tuple[int, ...] | None = None) -> None:
        self.version = 0
        self.closed = False
        self.observation_stats = (None if observation_shape is None
                                  else RunningStats.empty(observation_shape))
        self._stats_lock = threading.Lock()
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

    def merge_observation_stats(self, stats: RunningStats) -> None:
        with self._stats_lock:
            assert self.observation_stats is not None
            self.observation_stats.add(stats)

    def observation_stats_now(self) -> RunningStats | None:
        """A copy of the merged statistics (None: the run does not normalise)."""
        with self._stats_lock:
            return None if self.observation_stats is None else self.observation_stats.copy()

    def restore_observation_stats(self, stats: RunningStats) -> None:
        """A resumed run's statistics, from its checkpoint, before any actor reports."""
        with self._stats_lock:
            self.observation_stats = stats.copy()

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
