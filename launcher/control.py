"""The control endpoint a running ``shoal train`` keeps, and the client ``shoal scale`` uses.

The gRPC handlers never touch components: they queue a request and wait while the run's
watch loop, on the launcher's main thread (where Ray handles and local components live),
applies it between polls. The endpoint's address and the run token are written to
``RUN_DIR/control.json`` (mode 0600) while the run lives, and removed when it ends.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from shoal.launcher.fleet import ScaleResult, ScalingRefused
from shoal.protos import control_pb2, control_pb2_grpc
from shoal.protos.transport import bearer_metadata, bind, token_server, write_atomically

CONTROL_FILE = "control.json"
APPLY_TIMEOUT_SECONDS = 120.0  # starting actors on Ray, or one flushing its writer, is slow


class ScaleRequests:
    """Requests from the endpoint's threads, applied on the watch loop's thread."""

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[tuple[int, futures.Future[ScaleResult]]] = (
            queue.SimpleQueue())

    def submit(self, actors: int, timeout: float) -> ScaleResult:
        """Waits until the run applied the request; raises what applying raised, or
        TimeoutError, in which case the request is withdrawn unless it is under way."""
        done: futures.Future[ScaleResult] = futures.Future()
        self._pending.put((actors, done))
        try:
            return done.result(timeout)
        except futures.TimeoutError:
            if done.cancel():
                raise TimeoutError("the run did not apply the request in time") from None
            return done.result()  # it started: let it finish

    def apply_pending(self, scale: Callable[[int], ScaleResult]) -> None:
        while True:
            try:
                actors, done = self._pending.get_nowait()
            except queue.Empty:
                return
            if not done.set_running_or_notify_cancel():
                continue  # withdrawn by a caller that gave up waiting
            try:
                done.set_result(scale(actors))
            except (ValueError, ScalingRefused) as error:
                done.set_exception(error)


class _Servicer(control_pb2_grpc.RunControlServicer):
    def __init__(self, requests: ScaleRequests, status: Callable[[], dict[str, int]]) -> None:
        self._requests = requests
        self._status = status

    def Scale(self, request: control_pb2.ScaleRequest,
              context: grpc.ServicerContext) -> control_pb2.ScaleResponse:
        try:
            result = self._requests.submit(request.actors, APPLY_TIMEOUT_SECONDS)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except ScalingRefused as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except TimeoutError as error:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(error))
        return control_pb2.ScaleResponse(
            previous=result.previous, actors=result.actors,
            removed_items_sent=result.removed_items_sent,
            removed_items_stored=result.removed_items_stored,
            removed_items_flushed=result.removed_items_flushed,
            pending_actors=result.pending_actors)

    def Status(self, request: control_pb2.StatusRequest,
               context: grpc.ServicerContext) -> control_pb2.StatusResponse:
        return control_pb2.StatusResponse(**self._status())


class ControlServer:
    """``with ControlServer(token, requests, status) as control: control.address``."""

    def __init__(self, token: str, requests: ScaleRequests,
                 status: Callable[[], dict[str, int]], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._grpc = token_server(token, max_workers=8, max_message_bytes=1 << 20,
                                  thread_prefix="control")
        control_pb2_grpc.add_RunControlServicer_to_server(_Servicer(requests, status),
                                                          self._grpc)
        self.port, self.address = bind(self._grpc, host, port)

    def __enter__(self) -> ControlServer:
        self._grpc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._grpc.stop(grace=0.5).wait()


def write_control_file(run_dir: Path, address: str, token: str) -> None:
    """Readable by its owner only: it holds the run token."""
    write_atomically(run_dir / CONTROL_FILE, json.dumps({"address": address, "token": token}),
                     mode=0o600)


def remove_control_file(run_dir: Path) -> None:
    (run_dir / CONTROL_FILE).unlink(missing_ok=True)


class ControlClient:
    """What ``shoal scale`` talks to a run with."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = control_pb2_grpc.RunControlStub(self._channel)
        self._metadata = bearer_metadata(token)

    @classmethod
    def of_run(cls, run_dir: Path) -> ControlClient:
        """Raises FileNotFoundError when the run is not running (or never had one)."""
        saved: dict[str, Any] = json.loads((run_dir / CONTROL_FILE).read_text())
        return cls(saved["address"], saved["token"])

    def scale(self, actors: int, timeout: float = APPLY_TIMEOUT_SECONDS + 10) -> (
            control_pb2.ScaleResponse):
        return self._stub.Scale(control_pb2.ScaleRequest(actors=actors),
                                metadata=self._metadata, timeout=timeout)

    def status(self, timeout: float = 10.0) -> control_pb2.StatusResponse:
        return self._stub.Status(control_pb2.StatusRequest(), metadata=self._metadata,
                                 timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
