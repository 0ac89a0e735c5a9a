"""How shoal's processes reach each other, for every room: the per-run bearer token each
service requires, TLS, the channel options both ends share (message size limits are set
explicitly: an Atari CNN's weights or a batch of frames exceed gRPC's 4 MiB default),
binding, the backoff of a client whose service went away, and files other processes read
(addresses, control endpoints, checkpoint pointers), written so they never see half of one.
"""

from __future__ import annotations

import hmac
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

AUTH_HEADER = "authorization"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_CONCURRENT_CALLS = 256
"""Calls a replay or parameter server serves at once: every actor's Insert or Watch stream,
the learner's Sample stream and everything short-lived beside them."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def read_or_create_token(path: Path) -> str:
    """The token in ``path``; a fresh one written there (mode 0600) when it does not exist."""
    if path.exists():
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"token file {path} is empty")
        return token
    token = new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTH_HEADER, f"Bearer {token}"),)


# Backpressure is HTTP/2 flow control: a receiver that stops reading (a server whose rate
# limiter holds an Insert stream, a learner that has not taken the next batch) makes the
# sender's writes back up. gRPC's default window grows with bandwidth probing to megabytes:
# ~100k CartPole transitions past a blocked limiter, hundreds of sampled batches ahead of
# a learner (stale priorities, and counted as sampled). A fixed 64 KiB window per stream
# keeps that to a few messages, on both ends.
BACKPRESSURE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *BACKPRESSURE_OPTIONS,
    ]


def token_server(token: str, *, max_workers: int, max_message_bytes: int,
                 thread_prefix: str) -> grpc.Server:
    """A gRPC server that requires the run token, with the same message limits and
    flow-control window as the channels talking to it, refusing to share its port.

    Each call holds one of ``max_workers`` threads for its life (a stream for as long as it
    is open); a call beyond them is refused at once with RESOURCE_EXHAUSTED instead of
    queueing unseen behind streams that may never end."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_prefix),
        interceptors=[TokenAuthInterceptor(token)],
        options=[*channel_options(max_message_bytes), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=max_workers)


TLS_NAME = "shoal"
"""The name in every shoal certificate, and the one clients check: services bind node
addresses that no certificate could list ahead of time, so clients trust exactly the run's
certificate and ask it for this name."""


@dataclass(frozen=True)
class Tls:
    """A run's TLS certificate (and, for the processes that serve, its key), PEM."""

    cert: bytes
    key: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path, key: Path) -> Tls:
        return cls(cert.read_bytes(), key.read_bytes())

    @classmethod
    def generate(cls, directory: Path) -> Tls:
        """A self-signed certificate for ``TLS_NAME``, written into ``directory`` (key mode
        0600), valid 30 days; openssl does the cryptography."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "tls.crt", directory / "tls.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
             f"/CN={TLS_NAME}", "-addext", f"subjectAltName=DNS:{TLS_NAME}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True)
        key.chmod(0o600)
        return cls.from_files(cert, key)


def open_channel(address: str, tls: Tls | None,
                 options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A channel to a shoal service: TLS trusting exactly the run's certificate, or plain."""
    options = list(options or [])
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.cert)
    return grpc.secure_channel(address, credentials,
                               options=[*options, ("grpc.ssl_target_name_override", TLS_NAME)])


def bind(server: grpc.Server, host: str, port: int, tls: Tls | None = None) -> tuple[int, str]:
    """Binds ``host:port`` (0: any free port), with TLS when given; returns the port and
    ``host:port``."""
    if tls is not None:
        if tls.key is None:
            raise ValueError("tls: a server needs the certificate's key")
        credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    return bound, f"{host}:{bound}"


def _denying(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that fails UNAUTHENTICATED."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(deny, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Lets a call through only when its metadata carries ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token: expected a non-empty run token")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        presented = dict(handler_call_details.invocation_metadata or ()).get(AUTH_HEADER)
        if presented is None:
            return _denying(handler, "authorization: missing the run token (Bearer metadata)")
        if not hmac.compare_digest(str(presented).encode(), self._expected):
            return _denying(handler, "authorization: wrong run token")
        return handler


class Backoff:
    """Waits between reconnect attempts: 0.1 s, doubling to ``most``, back to 0.1 s after a
    success. ``wait`` returns early, True, once ``stop`` is set: a client being closed
    does not sit out its backoff."""

    FIRST_SECONDS = 0.1

    def __init__(self, stop: threading.Event, most: float = 5.0) -> None:
        self._stop = stop
        self._most = most
        self.seconds = self.FIRST_SECONDS

    def wait(self) -> bool:
        """Sleeps the current backoff and doubles it; whether ``stop`` was set."""
        stopped = self._stop.wait(self.seconds)
        self.seconds = min(self._most, self.seconds * 2)
        return stopped

    def reset(self) -> None:
        self.seconds = self.FIRST_SECONDS


@contextmanager
def atomic_path(path: Path, *, mode: int | None = None, fsync: bool = False) -> Iterator[Path]:
    """A scratch path beside ``path`` to write, renamed over ``path`` when the block ends
    without error (removed when it raises), so a reader sees the old file or the new one.
    ``mode``: the scratch file is created with it before anything is written (0o600 for a
    file that holds the run token); ``fsync``: flushed to disk before the rename."""
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.unlink(missing_ok=True)
    if mode is not None:
        os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield scratch
        if fsync:
            descriptor = os.open(scratch, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str, *, mode: int | None = None,
                     fsync: bool = False) -> None:
    """``text`` into ``path`` as ``atomic_path`` writes: whole or not at all."""
    with atomic_path(path, mode=mode, fsync=fsync) as scratch:
        scratch.write_text(text)
