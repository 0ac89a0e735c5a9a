"""Following the learner's weights without blocking the step loop.

A background thread holds one Watch stream open and keeps only the newest version it
received; the actor asks ``newer_than(version)`` between steps, which never waits.
The stream reconnects with backoff when the learner is away.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from shoal.algorithms.base import Weights
from shoal.algorithms.normalization import RunningStats
from shoal.protos import codec, parameters_pb2, parameters_pb2_grpc
from shoal.protos.transport import (
    Backoff,
    Tls,
    bearer_metadata,
    channel_options,
    open_channel,
)


class WeightFollower:
    def __init__(self, address: str, token: str, *, max_backoff: float = 5.0,
                 tls: Tls | None = None) -> None:
        self.received = 0
        self.reported = 0  # observations counted in reports the learner took
        self._unsent: RunningStats | None = None
        self._channel = open_channel(address, tls, channel_options())
        self._stub = parameters_pb2_grpc.ParameterServiceStub(self._channel)
        self._metadata = bearer_metadata(token)
        self._lock = threading.Condition()
        self._newest: parameters_pb2.Weights | None = None
        self._stop = threading.Event()
        self._call: object | None = None
        self._max_backoff = max_backoff
        self._thread = threading.Thread(target=self._follow, name="weights", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        backoff = Backoff(self._stop, self._max_backoff)
        while not self._stop.is_set():
            after = self._newest.version if self._newest is not None else 0
            try:
                call = self._stub.Watch(parameters_pb2.WatchRequest(after_version=after),
                                        metadata=self._metadata)
                self._call = call
                for message in call:
                    with self._lock:
                        self._newest = message
                        self._lock.notify_all()
                    self.received += 1
                    backoff.reset()
            except grpc.RpcError:
                if backoff.wait():
                    return

    def newer_than(self, version: int) -> tuple[int, Weights] | None:
        """The newest weights if they are newer than ``version``; never blocks on the network."""
        with self._lock:
            message = self._newest
        if message is None or message.version <= version:
            return None
        return message.version, codec.decode_columns(message.tensors)

    def wait_newer_than(self, version: int, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for weights newer than ``version``; whether they
        came. For synchronous actors, which may not go on before the learner has trained."""
        with self._lock:
            return self._lock.wait_for(
                lambda: self._newest is not None and self._newest.version > version, timeout)

    def report(self, stats: RunningStats) -> None:
        """Sends what the actor saw since its last report to the learner, without waiting;
        a report that fails (the learner is away) is added to the next one, so nothing the
        actor saw is lost."""
        with self._lock:
            if self._unsent is not None:
                stats.add(self._unsent)
                self._unsent = None
        if stats.count == 0:
            return
        request = parameters_pb2.ObservationStats(count=int(stats.count))
        codec.encode_tensor(stats.mean, out=request.mean)
        codec.encode_tensor(stats.m2, out=request.m2)
        future = self._stub.Report.future(request, metadata=self._metadata, timeout=10.0)

        def done(call: Any) -> None:
            if call.exception() is not None:
                with self._lock:
                    if self._unsent is None:
                        self._unsent = stats
                    else:
                        self._unsent.add(stats)
            else:
                self.reported += int(stats.count)

        future.add_done_callback(done)

    def close(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()  # type: ignore[attr-defined]
        self._channel.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WeightFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
