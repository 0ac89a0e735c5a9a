"""The Atari sample path: Pong transitions/s from one replay process into one learner's
prefetch queue, what the replay process spends per inserted item, and what the learner's
side spends to turn one batch into tensors.

    python benchmarks/sample_path.py [--env ALE/Pong-v5] [--record 2000] [--copies 5] \
        [--batch-size 32 256] [--seconds 10] [--json]

Recorded data: --record n-step DQN transitions of random Pong play (the actors' own env
maker and adder, 4 envs), inserted --copies times into a DQN Pong table (the run's own
table, ``resolve`` with the Atari settings of ``atari_pong.py``, its rate limiter replaced
by a minimum size of 1 so nothing waits) served by a replay process of its own.

- insert: items/s of one writer sending the recorded transitions (the writer compresses;
  the replay process checks and stores), and the replay process's CPU-seconds per item.
- into the prefetch queue: the learner's own sampling (``learner.prefetch.prefetching``:
  its sampler and prefetcher, on the CPU) drained for --seconds per batch size; transitions
  per second and the replay process's CPU-seconds per sampled item.
- decode per batch: the prefetch thread's work on one message of one batch (decompress,
  arrays to tensors), in ms, timed on messages taken from the stream beforehand.

With --json the last line is one JSON object: env, bytes_per_item (stored, compressed),
insert_items_per_s, server_cpu_us_per_insert, and per batch size under "batches":
batch_size, transitions_per_s, server_cpu_us_per_sampled_item, decode_ms_per_batch.
Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from shoal.protos.tables import MinSize, TableSpec

TOKEN = "sample-path"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--record", type=int, default=2000, help="transitions recorded")
    parser.add_argument("--copies", type=int, default=5, help="times each is inserted")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--seconds", type=float, default=10.0, help="per batch size")
    parser.add_argument("--json", action="store_true", help="end with a JSON object")
    return parser.parse_args(argv)


def table_spec(env_id: str) -> Any:
    from atari_pong import ATARI_SETTINGS

    from shoal.launcher.config import resolve

    settings = dict(ATARI_SETTINGS["dqn"], buffer_size=200_000)
    config = resolve({"algo": "dqn", "env": env_id, "algorithm": settings},
                     check_learner=False)
    return dataclasses.replace(config.table, rate_limiter=MinSize(1)), config


def record(env_id: str, config: Any, count: int) -> dict[str, np.ndarray]:
    """``count`` n-step transitions of random play, through the actors' env and adder."""
    from shoal.actors.adders import NStepTransitionAdder
    from shoal.actors.envs import make_vector_env

    envs = make_vector_env(env_id, 4, seed=0)
    adder = NStepTransitionAdder(4, config.algorithm.n_step, config.algorithm.gamma)
    rng = np.random.default_rng(0)
    chunks: list[dict[str, np.ndarray]] = []
    got = 0
    try:
        obs, _ = envs.reset(seed=0)
        while got < count:
            actions = rng.integers(0, envs.single_action_space.n, 4)
            next_obs, rewards, terminated, truncated, info = envs.step(actions)
            adder.add(obs, actions, rewards, next_obs, terminated, truncated,
                      info.get("final_obs"), version=0)
            taken = adder.take()
            if taken is not None:
                chunks.append(taken[0])
                got += len(taken[0]["reward"])
            obs = next_obs
    finally:
        envs.close()
    return {name: np.concatenate([chunk[name] for chunk in chunks])[:count]
            for name in chunks[0]}


def stamped(columns: dict[str, np.ndarray], frames: Iterable[str],
            value: int) -> dict[str, np.ndarray]:
    """The items with ``value`` in two corner pixels of every frame of the ``frames``
    fields: a frames table stores a frame it holds already once, so recorded items sent
    again would cost it nothing. Frames equal within one stamp stay equal (a message still
    shares them as the writer found them); none equals a frame of another stamp."""
    out = dict(columns)
    for name in frames:
        array = columns[name].copy()
        array[..., 0, 0] = value & 0xFF
        array[..., 0, 1] = (value >> 8) & 0xFF
        out[name] = array
    return out


def serve(spec: TableSpec, ready: Any, stop: Any) -> None:
    from shoal.replay_service.server import ReplayServer
    from shoal.replay_service.table import Table

    with ReplayServer([Table.from_spec(spec)], token=TOKEN, host="127.0.0.1",
                      port=0) as server:
        ready.send(server.address)
        stop.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def insert(client: Any, table: str, data: dict[str, np.ndarray], copies: int,
           pid: int) -> tuple[float, float]:
    """(items/s, replay CPU-seconds per item) of writing ``data`` ``copies`` times."""
    count = len(data["reward"])
    priorities = np.ones(count)
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    with client.writer(table) as writer:
        for _ in range(copies):
            for start in range(0, count, 256):
                writer.extend({name: column[start:start + 256]
                               for name, column in data.items()},
                              priorities[start:start + 256])
    seconds = time.perf_counter() - started
    return count * copies / seconds, (cpu_seconds(pid) - cpu) / (count * copies)


def into_prefetch(client: Any, table: str, batch_size: int, seconds: float,
                  pid: int) -> tuple[float, float]:
    """(transitions/s, replay CPU-seconds per sampled item) into the learner's prefetch
    queue, drained as fast as it fills."""
    import threading

    import torch

    from shoal.learner.prefetch import prefetching

    stop = threading.Event()
    with prefetching(client, table, batch_size, torch.device("cpu"), 4) as prefetcher:
        for _ in range(5):  # warm-up: the stream open, the first batches through
            prefetcher.get(stop)
        cpu, taken, started = cpu_seconds(pid), 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = prefetcher.get(stop)
            assert batch is not None
            taken += batch_size
        elapsed = time.perf_counter() - started
        used = cpu_seconds(pid) - cpu
    return taken / elapsed, used / taken


class Recorded:
    """Sample messages taken beforehand, served as a Sample stream is."""

    def __init__(self, messages: list[Any]) -> None:
        self._messages = iter(messages)

    def __next__(self) -> Any:
        return next(self._messages)

    def cancel(self) -> None:
        """Nothing to cancel."""


def decode_ms(client: Any, table: str, batch_size: int, repeats: int = 20) -> float:
    """The prefetch thread's work per message of one batch (decode as the learner's sampler
    does, ``learner.prefetch.decoding``, then tensors), timed alone: the median."""
    import torch

    from shoal.learner.prefetch import decoding, to_device
    from shoal.protos import replay_pb2
    from shoal.replay_service.sampling import Sampler

    request = replay_pb2.SampleRequest(table=table, batch_size=batch_size, prefetch=1,
                                       num_batches=repeats + 8)
    messages = list(client._stub.Sample(request, metadata=client._metadata))
    times = []
    device = torch.device("cpu")
    with Sampler(Recorded(messages), **decoding(4)) as sampler:
        for index in range(len(messages)):
            started = time.perf_counter()
            to_device(next(sampler), device)
            if index >= 8:  # the buffers made: what a running learner sees
                times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec, config = table_spec(args.env)
    data = record(args.env, config, args.record)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    stop = context.Event()
    server = context.Process(target=serve, args=(spec, theirs, stop), daemon=True)
    server.start()
    from shoal.replay_service.client import ReplayClient

    rows = []
    try:
        address = ours.recv()
        assert server.pid is not None
        with ReplayClient(address, TOKEN) as client:
            inserts, insert_cpu = insert(client, spec.name, data, args.copies, server.pid)
            info = client.info([spec.name])[spec.name]
            stored = info.stored_bytes / max(1, info.size)
            for batch_size in args.batch_size:
                rate, sample_cpu = into_prefetch(client, spec.name, batch_size, args.seconds,
                                                 server.pid)
                rows.append({"batch_size": batch_size, "transitions_per_s": rate,
                             "server_cpu_us_per_sampled_item": 1e6 * sample_cpu,
                             "decode_ms_per_batch": decode_ms(client, spec.name, batch_size)})
    finally:
        stop.set()
        server.join(timeout=30)
    print(f"{args.env} DQN transitions, {stored:,.0f} B stored per item (compressed)")
    print(f"insert: {inserts:,.0f} items/s from one writer; replay CPU "
          f"{1e6 * insert_cpu:,.1f} us per item")
    print(f"{'batch':>6} {'into prefetch/s':>16} {'replay CPU us/item':>19} "
          f"{'decode ms/batch':>16}")
    for row in rows:
        print(f"{row['batch_size']:>6} {row['transitions_per_s']:>16,.0f} "
              f"{row['server_cpu_us_per_sampled_item']:>19,.1f} "
              f"{row['decode_ms_per_batch']:>16.2f}")
    if args.json:
        print(json.dumps({"env": args.env, "bytes_per_item": stored,
                          "insert_items_per_s": inserts,
                          "server_cpu_us_per_insert": 1e6 * insert_cpu, "batches": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
