"""Random and mutated replay-service messages, and the properties a server must keep under
them; shared by ``test_fuzz.py`` (a fixed-seed budget) and ``benchmarks/fuzz_replay.py``
(minutes of it).

Messages are built the way an attacker or a buggy client would: start from a good
InsertRequest / SampleRequest / UpdatePrioritiesRequest for a real table and mutate it
(dtypes, shapes with negative, zero and huge dimensions, compression flags with random or
real compressed payloads, decompression bombs, item counts that disagree), or draw fields
at random. Each goes to a real ``shoal replay-server`` process on loopback, and the
harness checks after every message:

- the status is OK, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED or UNAUTHENTICATED;
- a refused message changed nothing (every table's Info counters as before);
- the server's resident memory stays within ``RSS_BOUND_BYTES`` of what it used once warm.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml
import zstandard
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from shoal.protos import codec, replay_pb2, replay_pb2_grpc
from shoal.protos.transport import bearer_metadata, channel_options
from shoal.replay_service.process import SpawnedReplayServer

ALLOWED = frozenset({grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.UNAUTHENTICATED})

RSS_BOUND_BYTES = 128 * 1024 * 1024
"""How far the server's RSS may rise above its warm level. The tables below hold at most
~0.5 MB of items; what a Sample stream legitimately holds is larger: a draw of up to
MAX_ITEMS_PER_CALL (65,536) frames items is a ~20 MB message, and a stream has up to three
at once (being built, queued, being sent), so ~60 MB, seen as +62 MB peaks. A bomb that got
through would be a gigabyte."""

# Tables that never block a sampler or a writer (MinSize(1), sampling with replacement,
# filled before fuzzing), so every valid request gets an answer without waiting.
TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "transitions": {"obs": {"dtype": "float32", "shape": [4]},
                    "action": {"dtype": "int64", "shape": []},
                    "reward": {"dtype": "float32", "shape": []}},
    "frames": {"frames": {"dtype": "uint8", "shape": [16, 16], "compression": "zstd"},
               "mask": {"dtype": "bool", "shape": [3], "compression": "lz4"},
               "action": {"dtype": "int64", "shape": []}},
}
MAX_SIZE = 500


def server_config() -> dict[str, Any]:
    selectors = {"transitions": {"type": "prioritized", "alpha": 0.6},
                 "frames": {"type": "uniform"}}
    return {"tables": [
        {"name": name, "max_size": MAX_SIZE, "selector": selectors[name],
         "rate_limiter": {"type": "min_size", "min_size": 1}, "signature": signature}
        for name, signature in TABLES.items()]}


def good_columns(table: str, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    columns = {}
    for name, spec in TABLES[table].items():
        shape = (count, *spec["shape"])
        if spec["dtype"] == "bool":
            columns[name] = rng.random(shape) < 0.5
        elif spec["dtype"] == "float32":
            columns[name] = rng.normal(size=shape).astype(np.float32)
        else:
            columns[name] = rng.integers(0, 255, size=shape).astype(spec["dtype"])
    return columns


def good_insert(table: str, count: int, seed: int = 0) -> replay_pb2.InsertRequest:
    request = replay_pb2.InsertRequest(table=table)
    compression = {name: spec.get("compression", "none")
                   for name, spec in TABLES[table].items()}
    codec.encode_columns(good_columns(table, count, np.random.default_rng(seed)),
                         request.columns, compression)
    return request


# ------------------------------------------------------------------------- strategies

def zstd_bomb(size: int, *, with_content_size: bool) -> bytes:
    """A valid zstd frame of ``size`` zero bytes (about 30 KB for a gigabyte), made in 1 MB
    pieces so that making it never holds the gigabyte itself."""
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=with_content_size)
    stream = compressor.compressobj(size=size if with_content_size else -1)
    piece = bytes(1 << 20)
    parts = [stream.compress(piece) for _ in range(size // len(piece))]
    parts.append(stream.compress(bytes(size % len(piece))))
    parts.append(stream.flush())
    return b"".join(parts)


# A gigabyte each, ~30 KB on the wire: one that got through would break the RSS bound.
_BOMBS = [zstd_bomb(10**9, with_content_size=sized) for sized in (True, False)]

dimensions = st.one_of(
    st.integers(0, 5),
    st.sampled_from([-1, -(2**63), 16, 84, 499, 500, 501, 65_537, 10**9, 2**31, 2**62,
                     2**63 - 1]))
dtypes = st.one_of(st.sampled_from(sorted(codec.SUPPORTED_DTYPES)),
                   st.sampled_from(["", "float128", "object", "<f4", "U8", "complex64"]),
                   st.text(max_size=8))
compressions = st.one_of(st.sampled_from([0, 1, 2]), st.integers(-3, 2**31 - 1))


@st.composite
def blobs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "lz4", "zstd", "bomb"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "bomb":
        return draw(st.sampled_from(_BOMBS))
    size = draw(st.sampled_from([0, 1, 3, 8, 24, 256, 1000]))
    raw = draw(st.binary(min_size=size, max_size=size))
    return codec.compress_rows(np.frombuffer(raw, np.uint8)[None], kind)[0]


@st.composite
def tensors(draw: st.DrawFn) -> replay_pb2.Tensor:
    tensor = replay_pb2.Tensor(dtype=draw(dtypes), compression=draw(compressions))
    tensor.shape[:] = draw(st.lists(dimensions, max_size=4))
    if draw(st.booleans()):
        tensor.data = draw(st.binary(max_size=512))
    tensor.rows.extend(draw(st.lists(blobs(), max_size=6)))
    return tensor


def _mutate_tensor(draw: st.DrawFn, tensor: replay_pb2.Tensor) -> None:
    what = draw(st.sampled_from(["dtype", "dim", "shape", "compression", "data", "truncate",
                                 "rows", "row", "drop_row", "replace", "as_compressed",
                                 "claim", "claim"]))
    if what == "as_compressed":  # the same claim, now as compressed rows of any kind
        tensor.compression = draw(st.sampled_from([1, 2]))
        tensor.ClearField("data")
        del tensor.rows[:]
        count = min(tensor.shape[0], 6) if tensor.shape else 1
        tensor.rows.extend(draw(st.lists(blobs(), min_size=count, max_size=count)))
    elif what == "claim":  # as many items as there are rows, each claimed of any size
        tensor.shape[:] = [len(tensor.rows), *draw(st.lists(dimensions, max_size=3))]
    elif what == "dtype":
        tensor.dtype = draw(dtypes)
    elif what == "dim" and tensor.shape:
        tensor.shape[draw(st.integers(0, len(tensor.shape) - 1))] = draw(dimensions)
    elif what == "shape":
        tensor.shape[:] = draw(st.lists(dimensions, max_size=4))
    elif what == "compression":
        tensor.compression = draw(compressions)
    elif what == "data":
        tensor.data = draw(st.binary(max_size=512))
    elif what == "truncate":
        tensor.data = tensor.data[:draw(st.integers(0, max(0, len(tensor.data) - 1)))]
    elif what == "rows":
        del tensor.rows[:]
        tensor.rows.extend(draw(st.lists(blobs(), max_size=6)))
    elif what == "row" and tensor.rows:
        tensor.rows[draw(st.integers(0, len(tensor.rows) - 1))] = draw(blobs())
    elif what == "drop_row" and tensor.rows:
        del tensor.rows[-1]
    elif what == "replace":
        tensor.CopyFrom(draw(tensors()))


@st.composite
def insert_requests(draw: st.DrawFn) -> replay_pb2.InsertRequest:
    table = draw(st.sampled_from(sorted(TABLES)))
    count = draw(st.integers(1, 8))
    request = good_insert(table, count, draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        priorities = np.asarray(draw(st.lists(st.floats(0, 100), min_size=count,
                                              max_size=count)))
        codec.encode_tensor(priorities, out=request.priorities)
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["column", "column", "priorities", "drop", "add",
                                       "table"]))
        if target == "column":
            _mutate_tensor(draw, request.columns[draw(st.sampled_from(sorted(request.columns)
                                                                      or ["x"]))])
        elif target == "priorities":
            if request.HasField("priorities") and draw(st.booleans()):
                _mutate_tensor(draw, request.priorities)
            else:
                request.priorities.CopyFrom(draw(tensors()))
        elif target == "drop" and request.columns:
            del request.columns[draw(st.sampled_from(sorted(request.columns)))]
        elif target == "add":
            request.columns[draw(st.text(max_size=6))].CopyFrom(draw(tensors()))
        elif target == "table":
            request.table = draw(st.sampled_from(["", "nope", "frames", "transitions"]))
    return request


sample_requests = st.builds(
    replay_pb2.SampleRequest,
    table=st.sampled_from(["transitions", "frames", "nope", ""]),
    batch_size=st.one_of(st.integers(-2, 40), st.sampled_from([499, 500, 501, 2**31 - 1])),
    prefetch=st.one_of(st.integers(-2, 8), st.sampled_from([63, 64, 65, 500_000])),
    num_batches=st.one_of(st.integers(-1, 3), st.sampled_from([2**62])),
    timeout_seconds=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0)),
)


@st.composite
def priority_requests(draw: st.DrawFn) -> replay_pb2.UpdatePrioritiesRequest:
    count = draw(st.integers(0, 12))
    request = replay_pb2.UpdatePrioritiesRequest(
        table=draw(st.sampled_from(["transitions", "transitions", "frames", "nope"])))
    keys = np.asarray(draw(st.lists(st.integers(-5, 3 * MAX_SIZE), min_size=count,
                                    max_size=count)), np.int64)
    codec.encode_tensor(keys, out=request.keys)
    priorities = np.asarray(draw(st.lists(st.floats(-1, 1e6), min_size=count,
                                          max_size=count)), np.float64)
    codec.encode_tensor(priorities, draw(st.sampled_from(["none", "lz4", "zstd"])),
                        out=request.priorities)
    for _ in range(draw(st.integers(0, 2))):
        _mutate_tensor(draw, request.keys if draw(st.booleans()) else request.priorities)
    return request


messages = st.one_of(insert_requests(), insert_requests(), sample_requests,
                     priority_requests(), st.builds(replay_pb2.InfoRequest, tables=st.lists(
                         st.sampled_from(sorted(TABLES)) | st.text(max_size=12), max_size=3)))


# ---------------------------------------------------------------------------- harness

def _rss_bytes(pid: int, key: str = "VmRSS") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{key}:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


@dataclass
class FuzzReport:
    messages: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    warm_rss_bytes: int = 0
    peak_rss_bytes: int = 0
    last_rss_bytes: int = 0  # after the last message: a leak shows here, a spike does not
    elapsed_seconds: float = 0.0


class Harness:
    """A real server and the checks made after each message sent to it."""

    def __init__(self, server: SpawnedReplayServer) -> None:
        self._server = server
        self._channel = grpc.insecure_channel(server.address, options=channel_options())
        self._stub = replay_pb2_grpc.ReplayServiceStub(self._channel)
        self._metadata = bearer_metadata(server.token)
        self._pid = server.process.pid
        self.report = FuzzReport()
        for table in TABLES:  # filled, so that no valid Sample waits
            self._call(good_insert(table, 50))
        self.report.warm_rss_bytes = _rss_bytes(self._pid)
        self.report.messages = 0
        self.report.statuses.clear()
        self.report.kinds.clear()

    def close(self) -> None:
        self._channel.close()

    def _counters(self) -> dict[str, tuple[int, ...]]:
        info = self._stub.Info(replay_pb2.InfoRequest(), metadata=self._metadata, timeout=30)
        return {t.name: (t.size, t.inserted_items, t.sampled_items, t.priority_updates,
                         t.stored_bytes) for t in info.tables}

    def _call(self, message: Any, metadata: Any = None) -> grpc.StatusCode:
        metadata = self._metadata if metadata is None else metadata
        try:
            if isinstance(message, replay_pb2.InsertRequest):
                list(self._stub.Insert(iter([message]), metadata=metadata, timeout=60))
            elif isinstance(message, replay_pb2.SampleRequest):
                stream = self._stub.Sample(message, metadata=metadata, timeout=60)
                try:
                    for received, _response in enumerate(stream, start=1):
                        if received == 3:  # unbounded or long streams: enough seen
                            break
                finally:
                    stream.cancel()
            elif isinstance(message, replay_pb2.UpdatePrioritiesRequest):
                self._stub.UpdatePriorities(message, metadata=metadata, timeout=60)
            else:
                self._stub.Info(message, metadata=metadata, timeout=60)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    def _settled_counters(self) -> dict[str, tuple[int, ...]]:
        """Counters once a cancelled Sample stream's last draw (if any) is done."""
        deadline = time.monotonic() + 30
        previous = self._counters()
        while True:
            time.sleep(0.02)
            current = self._counters()
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current

    def check(self, message: Any, wrong_token: bool = False) -> None:
        before = self._counters()
        metadata = bearer_metadata("not-the-token") if wrong_token else None
        status = self._call(message, metadata)
        self.report.messages += 1
        self.report.statuses[status.name] += 1
        self.report.kinds[type(message).__name__] += 1
        assert status in ALLOWED, f"{status.name} for {_describe(message)}"
        after = (self._settled_counters() if isinstance(message, replay_pb2.SampleRequest)
                 else self._counters())
        if status != grpc.StatusCode.OK:
            assert after == before, f"refused ({status.name}) but changed the tables: " \
                                    f"{before} -> {after}: {_describe(message)}"
        rss = self.report.last_rss_bytes = _rss_bytes(self._pid)
        self.report.peak_rss_bytes = max(self.report.peak_rss_bytes, rss)
        assert rss - self.report.warm_rss_bytes <= RSS_BOUND_BYTES, \
            f"server RSS {rss / 2**20:.0f} MiB, warm {self.report.warm_rss_bytes / 2**20:.0f}"

    def still_serves(self) -> None:
        """A good Insert and a good Sample still succeed after everything sent before."""
        for table in TABLES:
            before = self._counters()[table][1]
            assert self._call(good_insert(table, 4, seed=1)) == grpc.StatusCode.OK
            assert self._counters()[table][1] == before + 4
            stream = self._stub.Sample(replay_pb2.SampleRequest(
                table=table, batch_size=8, num_batches=1), metadata=self._metadata, timeout=30)
            responses = list(stream)
            assert len(responses) == 1 and responses[0].keys.shape[0] == 8


def _describe(message: Any) -> str:
    text = str(message)
    return f"{type(message).__name__} {text[:600]}{'...' if len(text) > 600 else ''}"


@contextmanager
def fuzz_server(workdir: Path) -> Iterator[Harness]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "tables.yaml"
    config.write_text(yaml.safe_dump(server_config()))
    with SpawnedReplayServer(config, workdir / "server") as server:
        harness = Harness(server)
        try:
            yield harness
        finally:
            harness.close()


def run_fuzz(harness: Harness, *, examples: int, seed: int) -> None:
    """``examples`` messages drawn with ``seed``; fails (shrunk to a small case) on the
    first property a message breaks."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(message=messages, wrong_token=st.sampled_from([False] * 19 + [True]))
    def check(message: Any, wrong_token: bool) -> None:
        harness.check(message, wrong_token)

    started = time.monotonic()
    check()
    harness.report.elapsed_seconds += time.monotonic() - started
