"""Replay load: how many writers one replay process holds, each on its own Insert stream,
while a learner-like sampler draws batches and sends priority updates beside them.

    python benchmarks/replay_load.py [--items cartpole pong] [--writers 1 4 16 64 128 250] \
        [--rate R] [--message-items M] [--max-in-flight 8] [--batch-size B] \
        [--batches-per-s 25] [--seconds 8] [--warmup 2] [--client-processes 4] \
        [--table-size S] [--server-threads 256] [--json]

One replay process on loopback: the run's own DQN table (``resolve``; for Pong with the
Atari settings of ``atari_pong.py``), its rate limiter replaced by a minimum size of 1 so
the server, not the limiter, is measured, its size by --table-size (CartPole 100k, Pong
20k), filled before the first step so every step inserts into a table that evicts.
Items are pre-built once: real transitions recorded through the actors' own env and adder
(``sample_path.record``), encoded by the client's own writer (``Writer.encode``: Pong in
frames-once form) with random initial priorities, serialized once and sent as bytes, so the
writers spend little CPU and the server parses and checks what actors send. Each Pong
message has its own value stamped into two corner pixels of every frame: the table keeps
a frame once by content, and copies of one recording would otherwise cost it nothing.

- writers: N synthetic writers spread round-robin over --client-processes processes
  (grpc.aio; a channel and connection per writer, as each actor has). Each offers R
  items/s (CartPole 5,000, Pong 1,000) in messages of M items (the run's, 256) on a fixed
  schedule, one message every M/R s from its own phase: open loop, so a late
  acknowledgement does not move the schedule. Like the client's Writer, a writer keeps at
  most --max-in-flight messages (8) unacknowledged, and asks for an acknowledgement every
  half of that and wherever its next message could have to wait; the others go with
  ack_later, for a later acknowledgement to cover. A message due while the bound is full
  is offered and not sent (unsent_messages). Offered: the items of the messages due in the
  --seconds window (after --warmup); held: the items of those an acknowledgement covered
  by at most 3 s after the window (the load runs on 1 s past it).
- acknowledgement latency: per message that asked for its own acknowledgement, from its
  hand-over to the stream to the reading of its InsertResponse (the server stores a
  stream's messages in order, so it includes the wait behind the ones before it); p50 and
  p99 over the window's messages. A message left for later waits for a later one to be
  sent, up to M/R s each, which says nothing of the server. The latency includes the
  client's event loop: send_late_p99_ms (sends against their schedule) and the client CPU
  say whether the load generator, rather than the server, fell behind.
- sampler: one process, the learner's shape of Sample stream (prefetch 2, 8 rotating
  decode buffers, up to 4 decode threads) read at --batches-per-s batches of --batch-size
  (CartPole 256, Pong 32) on a fixed schedule, each batch's keys sent back as an
  UpdatePriorities from a thread behind a queue of 4, as the learner does. samples_per_s:
  the batches due in the window that came, times the batch size.
- CPU: CPU-seconds per second over the window (1.0: one core) of the server, the client
  processes and the sampler (/proc/PID/stat), and of the whole machine (its cores less
  their idle time in /proc/stat: ours and anyone else's); the server's RSS (VmRSS) at the
  window's end.

A step breaks when held < 95 % of offered, or ack p99 > 100 ms; an item kind's sweep stops
at the first step that breaks. Every process is joined (or killed) when its step or sweep
ends. N is at most --server-threads less 6: a stream holds one of the server's threads for
its life, and a run's server has 256 (``transport.MAX_CONCURRENT_CALLS``); the sampler,
its updates and Info need the rest.

With --json the last line is one JSON object, {"runs": [...]}, one per item kind: items,
env, message_items, message_bytes (mean serialized size), rate_per_writer, batch_size,
batches_per_s, table_size, server_pid, broke_at (N, or null), broke_by ("held", "p99" or
null), and "steps", one per N: writers, offered_items_per_s, held_items_per_s,
held_fraction, ack_p50_ms, ack_p99_ms, samples_per_s, asked_samples_per_s, server_cpu,
server_rss_mb, client_cpu (all client processes), client_cpu_max (the busiest one),
sampler_cpu, machine_cpu, send_late_p99_ms, sample_late_p99_ms (batches against their
schedule), update_p99_ms (an UpdatePriorities call), unsent_messages, errors (failed
streams, and a sampler that failed) and first_errors (up to 3 distinct statuses).
Latencies are null where nothing was measured. Nothing is asserted: the machine is shared
and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import sample_path

from shoal.protos import replay_pb2
from shoal.protos.tables import MinSize, TableSpec
from shoal.protos.transport import MAX_CONCURRENT_CALLS, bearer_metadata, channel_options
from shoal.replay_service.client import ReplayClient

INSERT = "/shoal.replay.ReplayService/Insert"
# Appended to a serialized InsertRequest it sets ack_later (protobuf merges concatenated
# messages), so each message is serialized once for both forms.
ACK_LATER = replay_pb2.InsertRequest(ack_later=True).SerializeToString()
HELD_FRACTION = 0.95
P99_LIMIT_MS = 100.0
RESERVED_CALLS = 6      # of the server's threads: the sampler's stream, updates, Info
TOKEN = "replay-load"
DRAIN_SECONDS = 1.0     # the load goes on after the window, so its last messages see it too
ACK_TAIL_SECONDS = 2.0  # then the writers wait this long for acknowledgements still due
READY_SECONDS = 60.0    # spawning, importing, connecting: a bound, not an expectation
SAMPLE_PREFETCH = 2     # ReconnectingSampler's, which the learner uses
UPDATE_QUEUE = 4        # the learner's priority queue
RECORDED = 4096         # transitions recorded per kind; messages cycle over them


@dataclasses.dataclass(frozen=True)
class Kind:
    """An item kind's env and the defaults that make it look like its run's actors."""

    env: str
    rate: float        # items/s per writer
    batch_size: int    # the learner's
    table_size: int


KINDS = {
    # the 5,000 transitions/s replay_throughput.py assumes of a CartPole actor (a free one
    # made 7.7-13k env steps/s in actor_throughput.py); the DQN default batch
    "cartpole": Kind("CartPole-v1", rate=5000.0, batch_size=256, table_size=100_000),
    # an assumption: half the ~2,000 agent steps/s that 4 native Pong envs make with random
    # actions (vector_envs.py), the rest left to the CNN's inference; Nature DQN's batch
    "pong": Kind("ALE/Pong-v5", rate=1000.0, batch_size=32, table_size=20_000),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """One step's schedule, the same in every process: times are time.monotonic(), which
    is one clock for all processes of the machine."""

    start: float
    warmup: float
    seconds: float

    @property
    def window(self) -> tuple[float, float]:
        begin = self.start + self.warmup
        return begin, begin + self.seconds

    @property
    def end(self) -> float:
        return self.window[1] + DRAIN_SECONDS


@dataclasses.dataclass(frozen=True)
class Load:
    """What each writer offers."""

    writers: int        # N, over all processes
    interval: float     # seconds between one writer's messages
    message_items: int
    max_in_flight: int  # messages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16, 64, 128, 250],
                        help="the N of each step, at most --server-threads less "
                             f"{RESERVED_CALLS}")
    parser.add_argument("--rate", type=float, default=None, help="items/s per writer "
                        "(default: cartpole 5000, pong 1000)")
    parser.add_argument("--message-items", type=int, default=None,
                        help="items per Insert message (default: the run's, 256)")
    parser.add_argument("--max-in-flight", type=int, default=8,
                        help="unacknowledged messages per writer (the Writer's default)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the sampler's (default: cartpole 256, pong 32)")
    parser.add_argument("--batches-per-s", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured, per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured, per step")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=None,
                        help="the table's max_size (default: cartpole 100000, pong 20000)")
    parser.add_argument("--server-threads", type=int, default=MAX_CONCURRENT_CALLS,
                        help="the server's concurrent calls (a run's: %(default)s)")
    parser.add_argument("--json", action="store_true", help="end with a JSON object")
    args = parser.parse_args(argv)
    most = args.server_threads - RESERVED_CALLS
    if not all(1 <= n <= most for n in args.writers):
        parser.error(f"--writers: each 1..{most}: a stream holds one of the server's "
                     f"{args.server_threads} threads (--server-threads), and the sampler, "
                     f"its updates and Info need {RESERVED_CALLS}")
    if not 0 < args.seconds <= 120 or not 0 <= args.warmup <= 60:
        parser.error("--seconds: 0..120, --warmup: 0..60")
    if args.client_processes < 1 or args.max_in_flight < 1:
        parser.error("--client-processes and --max-in-flight: at least 1")
    return args


# Items ----------------------------------------------------------------------------------

def table_spec(kind: str, size: int) -> tuple[TableSpec, Any]:
    """The run's own table for the kind's DQN, bounded, never held by its rate limiter."""
    from shoal.launcher.config import resolve

    settings: dict[str, Any] = {"buffer_size": size}
    if kind == "pong":
        from atari_pong import ATARI_SETTINGS

        settings = dict(ATARI_SETTINGS["dqn"], buffer_size=size,
                        min_size_to_sample=min(size, ATARI_SETTINGS["dqn"]["min_size_to_sample"]))
    config = resolve({"algo": "dqn", "env": KINDS[kind].env, "algorithm": settings},
                     check_learner=False)
    return dataclasses.replace(config.table, rate_limiter=MinSize(1)), config


def build_messages(address: str, spec: TableSpec, recorded: dict[str, np.ndarray],
                   message_items: int) -> list[bytes]:
    """Serialized Insert messages, as the client's writer encodes them, with Ape-X-like
    initial priorities; enough that a message's frames come back only after the table has
    evicted its last copy (1.5 tables' worth), and at least every recorded item once."""
    frames = [name for name, field in spec.signature.items() if field.frames]
    has_frames = bool(frames)
    count = len(recorded["reward"])
    starts = range(0, count - message_items + 1, message_items)
    wanted = len(starts)
    if has_frames:  # a frame back while its last copy is stored would cost the table nothing
        wanted = max(wanted, math.ceil(1.5 * spec.max_size / message_items))
    rng = np.random.default_rng(0)
    messages = []
    with ReplayClient(address, TOKEN) as client, \
            client.writer(spec.name, max_items_per_message=message_items) as writer:
        for index in range(wanted):
            start = starts[index % len(starts)]
            columns = {name: column[start:start + message_items]
                       for name, column in recorded.items()}
            if has_frames:
                columns = sample_path.stamped(columns, frames, index)
            request = writer.encode(columns, rng.exponential(size=message_items) + 1e-3)
            messages.append(request.SerializeToString())
    return messages


def prefill(address: str, messages: list[bytes], items: int,
            message_items: int) -> None:
    """The table full before the first step: every step then inserts into a table that
    evicts, as a running one does."""
    count = math.ceil(items / message_items)
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        insert = channel.stream_stream(INSERT, request_serializer=None,
                                       response_deserializer=replay_pb2.InsertResponse.FromString)
        requests = (messages[index % len(messages)] for index in range(count))
        for _ in insert(requests, metadata=bearer_metadata(TOKEN), timeout=120):
            pass


# Writers (client processes) -------------------------------------------------------------

@dataclasses.dataclass
class WriterRecord:
    """One writer's messages in its window, as numbers the parent only adds up."""

    offered: int = 0
    sent: int = 0
    held: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    late_ms: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None


def receive(conn: Connection, timeout: float) -> Any:
    """The parent's next message, or EOFError after ``timeout``: a child never waits on a
    parent that is gone."""
    if not conn.poll(timeout):
        raise EOFError(f"nothing from the parent in {timeout:.0f} s")
    return conn.recv()


@dataclasses.dataclass
class Schedule:
    """One writer's messages: when each is due, and when it went out and came back."""

    first_due: float
    interval: float
    sent_at: list[float]
    acked_at: list[float]  # when an acknowledgement covering it came: its own or a later one
    asked: list[bool]      # whether it asked for its own (not ack_later)

    @classmethod
    def of(cls, first_due: float, interval: float, until: float) -> Schedule:
        slots = max(0, math.ceil((until - first_due) / interval))
        return cls(first_due, interval, [math.nan] * slots, [math.nan] * slots,
                   [False] * slots)

    def due(self, slot: int) -> float:
        return self.first_due + slot * self.interval


async def offer(call: Any, messages: list[bytes], first: int, schedule: Schedule,
                max_in_flight: int) -> None:
    """Sends on schedule whatever the acknowledgements say, so a slow server shows as
    latency and unsent messages, not as a writer that quietly offers less; asks for
    acknowledgements as the client's Writer does (``Writer._send``): every half of the
    in-flight bound, and wherever the next message could have to wait."""
    order: list[int] = []  # the slot of each message sent, in stream order
    acked = 0
    since_asked = 0

    async def read_acks() -> None:
        nonlocal acked
        while (response := await call.read()) is not grpc.aio.EOF:
            now = time.monotonic()
            for slot in order[acked:response.messages]:  # running totals: all up to it
                schedule.acked_at[slot] = now
            acked = response.messages

    reader = asyncio.create_task(read_acks())
    try:
        for slot in range(len(schedule.sent_at)):
            delay = schedule.due(slot) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if reader.done():
                break  # the stream failed: the rest is offered, not sent
            in_flight = len(order) - acked
            if in_flight >= max_in_flight:
                continue
            since_asked += 1
            asks = 2 * since_asked >= max_in_flight or in_flight + 2 > max_in_flight
            since_asked = 0 if asks else since_asked
            message = messages[(first + slot) % len(messages)]
            schedule.asked[slot] = asks
            order.append(slot)
            schedule.sent_at[slot] = time.monotonic()
            await call.write(message if asks else message + ACK_LATER)
        await call.done_writing()
        await reader  # the stream's error, if it failed
    finally:
        reader.cancel()


async def write_load(channel: Any, metadata: Any, messages: list[bytes], index: int,
                     load: Load, plan: Plan) -> WriterRecord:
    """Writer ``index`` of ``load.writers``, its phase and first message its own, so the
    writers neither send in step nor send the same messages at once."""
    schedule = Schedule.of(plan.start + load.interval * index / load.writers, load.interval,
                           plan.end)
    call = channel.stream_stream(INSERT, request_serializer=None,
                                 response_deserializer=replay_pb2.InsertResponse.FromString
                                 )(metadata=metadata)
    record = WriterRecord()
    try:
        await asyncio.wait_for(
            offer(call, messages, index * len(messages) // load.writers, schedule,
                  load.max_in_flight),
            plan.end + ACK_TAIL_SECONDS - time.monotonic())
    except asyncio.TimeoutError:
        pass  # acknowledgements still due: those messages are not held
    except grpc.RpcError as error:
        record.error = f"{error.code().name}: {error.details()}"[:300]
    finally:
        call.cancel()  # nothing once the stream has ended
    tally(schedule, plan.window, record)
    return record


def tally(schedule: Schedule, window: tuple[float, float], record: WriterRecord) -> None:
    """The messages due in the window, into ``record``: latency only of those that asked
    for their own acknowledgement (the rest wait for a later message to be sent)."""
    for slot, sent in enumerate(schedule.sent_at):
        due, acked = schedule.due(slot), schedule.acked_at[slot]
        if not window[0] <= due < window[1]:
            continue
        record.offered += 1
        if not math.isnan(sent):
            record.sent += 1
            record.late_ms.append(1e3 * (sent - due))
        if not math.isnan(acked):
            record.held += 1
            if schedule.asked[slot]:
                record.latencies_ms.append(1e3 * (acked - sent))


async def run_writers(address: str, token: str, messages: list[bytes], indices: list[int],
                      load: Load, conn: Connection) -> list[WriterRecord]:
    # A connection per writer, as actors have (channels alike would share one otherwise).
    options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in indices]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)),
                               READY_SECONDS)
        conn.send(("ready", None))
        loop = asyncio.get_running_loop()
        plan = await loop.run_in_executor(None, receive, conn, READY_SECONDS)
        metadata = bearer_metadata(token)
        return list(await asyncio.gather(*(
            write_load(channel, metadata, messages, index, load, plan)
            for channel, index in zip(channels, indices, strict=True))))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def client_process(address: str, token: str, messages: list[bytes], indices: list[int],
                   load: Load, conn: Connection) -> None:
    """A process of writers: this module's spawned children start here."""
    try:
        records = asyncio.run(run_writers(address, token, messages, indices, load, conn))
        conn.send(("result", records))
    except Exception as error:  # say it to the parent, which reports it with the step
        with contextlib.suppress(OSError):
            conn.send(("error", f"writers: {error!r}"))


# Sampler --------------------------------------------------------------------------------

@dataclasses.dataclass
class SamplerRecord:
    batches: int = 0  # of those due in the window
    late_ms: list[float] = dataclasses.field(default_factory=list)
    update_ms: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None


def send_priorities(client: ReplayClient, table: str, pending: queue.Queue[Any],
                    record: SamplerRecord, window: list[float]) -> None:
    """The learner's priority thread: one UpdatePriorities per batch, in order; a failed
    one is reported and dropped, so the sampler never blocks on a queue nobody empties."""
    rng = np.random.default_rng(1)
    while (keys := pending.get()) is not None:
        started = time.monotonic()
        try:
            client.update_priorities(table, keys, rng.exponential(size=keys.size) + 1e-3)
        except grpc.RpcError as error:
            record.error = record.error or f"update: {error.code().name}: {error.details()}"
            continue
        if window and window[0] <= started < window[1]:
            record.update_ms.append(1e3 * (time.monotonic() - started))


def sample_load(client: ReplayClient, table: str, batch_size: int, batches_per_s: float,
                conn: Connection, record: SamplerRecord) -> None:
    """Batches at the learner's pace: one due every 1 / batches_per_s s, taken when due
    (a late one at once, as a learner that waited for it would), its priorities sent."""
    pending: queue.Queue[Any] = queue.Queue(maxsize=UPDATE_QUEUE)
    window: list[float] = []
    sender = threading.Thread(target=send_priorities, name="priorities", daemon=True,
                              args=(client, table, pending, record, window))
    sender.start()
    try:
        with client.sample(table, batch_size, prefetch=SAMPLE_PREFETCH, reuse_buffers=8,
                           decode_threads=min(4, os.cpu_count() or 1)) as batches:
            next(batches)  # the stream open and drawing before the clock starts
            conn.send(("ready", None))
            plan: Plan = receive(conn, READY_SECONDS)
            window.extend(plan.window)
            for slot in range(math.ceil((plan.end - plan.start) * batches_per_s)):
                due = plan.start + slot / batches_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif -delay > DRAIN_SECONDS + ACK_TAIL_SECONDS:
                    break  # so far behind that the rest cannot count
                batch = next(batches)
                if window[0] <= due < window[1]:
                    record.batches += 1
                    record.late_ms.append(1e3 * (time.monotonic() - due))
                pending.put(batch.keys.copy())
    finally:
        pending.put(None)
        sender.join(timeout=10)


def sampler_process(address: str, token: str, table: str, batch_size: int,
                    batches_per_s: float, conn: Connection) -> None:
    """The learner-like sampler's process."""
    record = SamplerRecord()
    try:
        with ReplayClient(address, token) as client:
            client.wait_ready(READY_SECONDS)
            sample_load(client, table, batch_size, batches_per_s, conn, record)
    except Exception as error:
        record.error = f"sampler: {error!r}"[:300]
    with contextlib.suppress(OSError):
        conn.send(("result", record))


# The parent -----------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    try:
        return sample_path.cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return math.nan  # gone early: its step reports an error anyway


def idle_seconds() -> float:
    """CPU-seconds the machine's cores have been idle (/proc/stat's idle and iowait). Idle
    time is the kernel's exact count; busy time is sampled at ticks, which streams that wake
    many times a tick escape (measured: busy below the sum of the processes' own times)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split()[1:6]]
    return (ticks[3] + ticks[4]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


@contextlib.contextmanager
def children(targets: list[tuple[Any, tuple[Any, ...]]]
             ) -> Iterator[list[tuple[BaseProcess, Connection]]]:
    """Spawned processes, each with a pipe to this one; all of them gone after the block
    (a child whose pipe closes stops waiting; one still there after the grace is killed)."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[BaseProcess, Connection]] = []
    try:
        for index, (target, args) in enumerate(targets):
            ours, theirs = context.Pipe()
            child = context.Process(target=target, args=(*args, theirs), daemon=True,
                                    name=f"{target.__name__} {index}")
            child.start()
            theirs.close()
            started.append((child, ours))
        yield started
    finally:
        for _, conn in started:
            conn.close()
        deadline = time.monotonic() + 10
        for process, _ in started:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def serve(spec: TableSpec, threads: int, ready: Connection, stop: Any) -> None:
    """The replay process: ``sample_path.serve`` with the server's thread count given."""
    from shoal.replay_service.server import ReplayServer
    from shoal.replay_service.table import Table

    with ReplayServer([Table.from_spec(spec)], token=TOKEN, host="127.0.0.1", port=0,
                      max_workers=threads) as server:
        ready.send(server.address)
        stop.wait()


@contextlib.contextmanager
def served(spec: TableSpec, threads: int) -> Iterator[tuple[str, int]]:
    """The replay process for the block: its address and pid."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    stop = context.Event()
    server = context.Process(target=serve, args=(spec, threads, theirs, stop), daemon=True,
                             name="replay process")
    server.start()
    try:
        if not heard(ours, server, time.monotonic() + READY_SECONDS):
            raise RuntimeError("the replay process did not start")
        assert server.pid is not None
        yield ours.recv(), server.pid
    finally:
        stop.set()
        server.join(timeout=30)
        if server.is_alive():
            server.kill()
            server.join()
        ours.close()


def heard(conn: Connection, process: BaseProcess, deadline: float) -> bool:
    """Whether ``conn`` has something before ``deadline``; a process that died silent is
    known at once, not at the deadline."""
    while not conn.poll():
        left = deadline - time.monotonic()
        if left <= 0 or not process.is_alive():
            return False
        multiprocessing.connection.wait([conn, process.sentinel], left)
    return True


def expect(conn: Connection, process: BaseProcess, what: str, deadline: float) -> Any:
    if not heard(conn, process, deadline):
        raise RuntimeError(f"{process.name} sent no {what}: "
                           + ("it died" if not process.is_alive() else "timed out"))
    tag, value = conn.recv()
    if tag == "error":
        raise RuntimeError(value)
    if tag != what:
        raise RuntimeError(f"a child sent {tag!r}, expected {what!r}")
    return value


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


@dataclasses.dataclass(frozen=True)
class Usage:
    """CPU-seconds per second over the window (1.0: one core), and the server's RSS."""

    server: float
    clients: list[float]
    sampler: float
    machine: float
    server_rss_mb: float


@contextlib.contextmanager
def usage(server_pid: int, clients: list[int], sampler: int) -> Iterator[list[Usage]]:
    """What the processes used during the block, in the list it yields once it ends; the
    machine's share is its cores less their idle time: everyone who ran, ours or not."""
    pids = [server_pid, *clients, sampler]
    before, idle, started = [cpu_seconds(pid) for pid in pids], idle_seconds(), time.monotonic()
    out: list[Usage] = []
    yield out
    seconds = time.monotonic() - started
    used = [(cpu_seconds(pid) - start) / seconds for pid, start in zip(pids, before, strict=True)]
    machine = (os.cpu_count() or 1) - (idle_seconds() - idle) / seconds
    out.append(Usage(used[0], used[1:-1], used[-1], machine, rss_mb(server_pid)))


def run_step(address: str, server_pid: int, table: str, messages: list[bytes], load: Load,
             args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """One N: the writers and the sampler started, told one schedule, measured, gone."""
    processes = min(args.client_processes, load.writers)
    targets: list[tuple[Any, tuple[Any, ...]]] = [
        (client_process, (address, TOKEN, messages,
                          list(range(index, load.writers, processes)), load))
        for index in range(processes)]
    targets.append((sampler_process, (address, TOKEN, table, batch_size,
                                      args.batches_per_s)))
    with children(targets) as started:
        ready_by = time.monotonic() + READY_SECONDS
        for process, conn in started:
            expect(conn, process, "ready", ready_by)
        plan = Plan(time.monotonic() + 0.2, args.warmup, args.seconds)
        for _, conn in started:
            conn.send(plan)
        pids = [process.pid or 0 for process, _ in started]
        begin, end = plan.window
        time.sleep(max(0.0, begin - time.monotonic()))
        with usage(server_pid, pids[:-1], pids[-1]) as used:
            time.sleep(max(0.0, end - time.monotonic()))
        results_by = plan.end + ACK_TAIL_SECONDS + 30
        results = [expect(conn, process, "result", results_by) for process, conn in started]
    return summarize(load, results[:-1], results[-1], used[0], args, batch_size)


def summarize(load: Load, clients: list[list[WriterRecord]], sampler: SamplerRecord,
              used: Usage, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    writers = [record for records in clients for record in records]
    offered = sum(record.offered for record in writers) * load.message_items
    held = sum(record.held for record in writers) * load.message_items
    latencies = [ms for record in writers for ms in record.latencies_ms]
    late = [ms for record in writers for ms in record.late_ms]
    errors = [error for error in [*(record.error for record in writers), sampler.error]
              if error]
    return {
        "writers": load.writers,
        "offered_items_per_s": offered / args.seconds,
        "held_items_per_s": held / args.seconds,
        "held_fraction": held / offered if offered else None,
        "ack_p50_ms": percentile(latencies, 50),
        "ack_p99_ms": percentile(latencies, 99),
        "samples_per_s": sampler.batches * batch_size / args.seconds,
        "asked_samples_per_s": args.batches_per_s * batch_size,
        "server_cpu": used.server,
        "server_rss_mb": used.server_rss_mb,
        "client_cpu": sum(used.clients),
        "client_cpu_max": max(used.clients),
        "sampler_cpu": used.sampler,
        "machine_cpu": used.machine,
        "send_late_p99_ms": percentile(late, 99),
        "sample_late_p99_ms": percentile(sampler.late_ms, 99),
        "update_p99_ms": percentile(sampler.update_ms, 99),
        "unsent_messages": sum(record.offered - record.sent for record in writers),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
    }


def broken_by(step: dict[str, Any]) -> str | None:
    if step["held_fraction"] is None or step["held_fraction"] < HELD_FRACTION:
        return "held"
    if step["ack_p99_ms"] is None or step["ack_p99_ms"] > P99_LIMIT_MS:
        return "p99"
    return None


HEADER = (f"{'N':>4} {'offered/s':>10} {'held/s':>10} {'held':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'samples/s':>10} {'asked/s':>8} {'server':>6} {'RSS MB':>7} "
          f"{'clients':>7} {'busiest':>7} {'sampler':>7} {'machine':>7} {'late99':>7} "
          f"{'smp99':>7}")


def row(step: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    fraction = step["held_fraction"]
    return (f"{step['writers']:>4} {step['offered_items_per_s']:>10,.0f} "
            f"{step['held_items_per_s']:>10,.0f} "
            f"{'-' if fraction is None else f'{100 * fraction:.1f}%':>6} "
            f"{ms(step['ack_p50_ms']):>7} {ms(step['ack_p99_ms']):>7} "
            f"{step['samples_per_s']:>10,.0f} {step['asked_samples_per_s']:>8,.0f} "
            f"{step['server_cpu']:>6.2f} {step['server_rss_mb']:>7.0f} "
            f"{step['client_cpu']:>7.2f} {step['client_cpu_max']:>7.2f} "
            f"{step['sampler_cpu']:>7.2f} {step['machine_cpu']:>7.2f} "
            f"{ms(step['send_late_p99_ms']):>7} {ms(step['sample_late_p99_ms']):>7}")


def generator_note(step: dict[str, Any]) -> str:
    """A warning where the load generator or the machine, not the server, may have been
    the bound: a client process near a core, or every core busy."""
    if step["client_cpu_max"] >= 0.9:
        return " (a client process near a core: the load generator may have broken first)"
    if step["machine_cpu"] >= 0.95 * (os.cpu_count() or 1):
        return " (every core busy: the server may have waited for one)"
    return ""


def why(step: dict[str, Any], broke: str) -> str:
    if broke == "held":
        return (f"held {100 * (step['held_fraction'] or 0):.1f}% < "
                f"{100 * HELD_FRACTION:.0f}% of offered")
    p99 = step["ack_p99_ms"]
    return f"ack p99 {'-' if p99 is None else f'{p99:.1f}'} ms > {P99_LIMIT_MS:.0f} ms"


def sweep(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """The kind's steps in order of N, up to the first that breaks."""
    defaults = KINDS[kind]
    spec, config = table_spec(kind, args.table_size or defaults.table_size)
    message_items = args.message_items or config.algorithm.items_per_message
    rate = args.rate or defaults.rate
    batch_size = args.batch_size or defaults.batch_size
    recorded = sample_path.record(defaults.env, config, max(RECORDED, message_items))
    run: dict[str, Any] = {
        "items": kind, "env": defaults.env, "message_items": message_items,
        "rate_per_writer": rate, "batch_size": batch_size,
        "batches_per_s": args.batches_per_s, "table_size": spec.max_size,
        "steps": [], "broke_at": None, "broke_by": None}
    with served(spec, args.server_threads) as (address, server_pid):
        run["server_pid"] = server_pid
        messages = build_messages(address, spec, recorded, message_items)
        run["message_bytes"] = sum(map(len, messages)) / len(messages)
        prefill(address, messages, spec.max_size, message_items)
        print(f"\n{kind}: {defaults.env} DQN transitions, messages of {message_items} "
              f"({run['message_bytes']:,.0f} B), {rate:,.0f} items/s per writer; sampler "
              f"{args.batches_per_s:g} batches/s of {batch_size}; table of {spec.max_size:,}; "
              f"CPU in cores over {args.seconds:g} s", flush=True)
        print(HEADER, flush=True)
        for writers in sorted(args.writers):
            load = Load(writers, message_items / rate, message_items, args.max_in_flight)
            step = run_step(address, server_pid, spec.name, messages, load, args,
                            batch_size)
            run["steps"].append(step)
            print(row(step), flush=True)
            for error in step["first_errors"]:
                print(f"     error: {error}", flush=True)
            broke = broken_by(step)
            if broke is not None:
                run["broke_at"], run["broke_by"] = writers, broke
                print(f"broke at N={writers}: {why(step, broke)}; server CPU "
                      f"{step['server_cpu']:.2f}, clients {step['client_cpu']:.2f} (busiest "
                      f"{step['client_cpu_max']:.2f}), machine {step['machine_cpu']:.2f} of "
                      f"{os.cpu_count()} cores{generator_note(step)}", flush=True)
                break
        else:
            print(f"held at every N up to {max(args.writers)}", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"replay load on {os.cpu_count()} cores; client processes up to "
          f"{args.client_processes}; a step breaks at held < {100 * HELD_FRACTION:.0f}% of "
          f"offered or ack p99 > {P99_LIMIT_MS:.0f} ms\n(CPU columns in cores; late99 and smp99: "
          f"p99 ms by which sends and sampled batches missed their schedule)", flush=True)
    runs = [sweep(kind, args) for kind in args.items]
    if args.json:
        print(json.dumps({"runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
